"""``prefix_engine: openvino``: the frozen layers below the head converted from the loaded model and
run by OpenVINO. Its states are the torch pass's (fp32), its head makes the reference's decisions,
its states are cached apart from torch's, and an int8 prefix stays close."""

import sys

import numpy as np
import pytest
import torch
from test_llm_head import head_model

from emoreg.errors import EmoregError
from emoreg.models.llm import prefix
from emoreg.models.llm import states as llm_states

SETTINGS = {"layers": 2, "tune_layers": 1, "tune": "full", "epochs": 10}


@pytest.fixture(autouse=True)
def empty_state_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOREG_STATE_CACHE", str(tmp_path / "states"))
    llm_states.CACHE.forget()


def _cosines(ours: dict, reference: dict) -> torch.Tensor:
    assert set(ours) == set(reference)
    return torch.cat([torch.nn.functional.cosine_similarity(ours[k].float(), v.float(), dim=-1)
                      for k, v in reference.items()])  # per token


@pytest.mark.parametrize("architecture", ["tiny_llama", "tiny_qwen2", "tiny_gemma3"])
def test_openvino_states_are_the_torch_states_and_the_decisions_the_same(request, architecture, toy_split):
    """fp32 both ways, several layers from one pass (``state_layers``), batches of several widths
    (padding on the right): the states entering each layer match torch's, so does every decision."""
    train, test = toy_split
    folder = request.getfixturevalue(architecture)
    reference = head_model(folder, score_batch=3, state_layers=[0], **SETTINGS).fit(train)
    torch_states = dict(llm_states.CACHE.states)
    torch_lower = llm_states.load_shards(llm_states.cache_folder(reference, 0))
    llm_states.CACHE.forget()
    engine = head_model(folder, prefix_engine="openvino", score_batch=3, state_layers=[0], **SETTINGS).fit(train)
    assert engine.fit_report.states_computed == len(torch_states)  # nothing taken from torch's cache
    assert set(engine.prefix_engines_) == {("openvino", (0, 1), False, False)}  # one conversion: both layers, one pass
    assert _cosines(llm_states.CACHE.states, torch_states).min() > 0.99999
    assert all(torch.allclose(llm_states.CACHE.states[k], v, atol=1e-4) for k, v in torch_states.items())
    lower = llm_states.load_shards(llm_states.cache_folder(engine, 0))
    assert all(torch.allclose(lower[k], v, atol=1e-4) for k, v in torch_lower.items())
    assert engine.predict(test) == reference.predict(test)
    assert np.allclose(engine.predict_proba(test), reference.predict_proba(test), atol=1e-3)
    assert engine.describe()["prefix_engine"] == "openvino"


def test_each_engine_keeps_a_cache_of_its_own(tiny_llama, toy_split):
    """States made by OpenVINO are never read by a torch run, nor the other way round, in memory
    or on disk; each finds its own again in a new process."""
    train, _ = toy_split
    settings = SETTINGS | {"epochs": 1}
    first = head_model(tiny_llama, **settings).fit(train)
    n = first.fit_report.states_computed
    assert n > 0
    engine = head_model(tiny_llama, prefix_engine="openvino", **settings).fit(train)
    assert engine.fit_report.states_computed == n
    assert llm_states.cache_folder(engine, 1) != llm_states.cache_folder(first, 1)
    int8 = head_model(tiny_llama, prefix_engine="openvino", prefix_dtype="int8", **settings).fit(train)
    assert int8.fit_report.states_computed == n
    assert len({llm_states.cache_folder(m, 1) for m in (first, engine, int8)}) == 3
    for params in ({}, {"prefix_engine": "openvino"}, {"prefix_engine": "openvino", "prefix_dtype": "int8"}):
        llm_states.CACHE.forget()  # a new process
        again = head_model(tiny_llama, **params, **settings).fit(train)
        assert again.fit_report.states_computed == 0 and not hasattr(again, "prefix_engines_")  # nothing converted


def test_an_openvino_int8_prefix_stays_close_and_keeps_the_decisions(tiny_llama, toy_split, monkeypatch):
    """int8 weights for the frozen layer (the tiny model has one below the head, so no layer is kept
    in float here): states close to fp32's but not equal, the same decisions."""
    monkeypatch.setattr(prefix, "FLOAT_LAYERS", 0)
    train, test = toy_split
    reference = head_model(tiny_llama, **SETTINGS).fit(train)
    float_states = dict(llm_states.CACHE.states)
    llm_states.CACHE.forget()
    quantised = head_model(tiny_llama, prefix_engine="openvino", prefix_dtype="int8", **SETTINGS).fit(train)
    cosines = _cosines(llm_states.CACHE.states, float_states)
    assert cosines.mean() > 0.99 and cosines.min() > 0.95
    assert any(not torch.allclose(llm_states.CACHE.states[k], v, atol=1e-4) for k, v in float_states.items())
    assert quantised.predict(test) == reference.predict(test)


def test_openvino_settings_that_cannot_work_are_clear_errors(tiny_llama, toy_split, monkeypatch):
    from emoreg.models.llm.model import LlmClassifier

    train, _ = toy_split
    with pytest.raises(EmoregError, match="prefix_engine must be one of torch, openvino"):
        LlmClassifier.check_params({"prefix_engine": "onnx"})
    with pytest.raises(EmoregError, match="prefix_engine openvino .* needs head: classify"):
        LlmClassifier.check_params({"prefix_engine": "openvino", "head": "lm"})
    with pytest.raises(EmoregError, match="layer 0 has none below it"):
        head_model(tiny_llama, prefix_engine="openvino", layers=2, tune_layers=2, epochs=1).fit(train)
    monkeypatch.setitem(sys.modules, "openvino", None)  # not installed
    with pytest.raises(EmoregError, match=r"pip install 'emoreg\[openvino\]'"):
        head_model(tiny_llama, prefix_engine="openvino", **SETTINGS).fit(train)


def test_a_classifier_switched_from_torch_int8_to_openvino_converts_the_float_model(tiny_llama, toy_split,
                                                                                    monkeypatch, tmp_path):
    """prefix_guard's case: one trained head scored through one prefix after another. The torch int8
    pass quantised copies, so OpenVINO converts the float layers and makes torch fp32's states."""
    monkeypatch.setattr(prefix, "FLOAT_LAYERS", 0)
    train, _ = toy_split
    model = head_model(tiny_llama, prefix_dtype="int8", **SETTINGS | {"epochs": 1}).fit(train)
    keys = list(llm_states.CACHE.states)[:3]
    model.params |= {"prefix_engine": "openvino", "prefix_dtype": "same"}
    llm_states.CACHE.forget()
    monkeypatch.setenv("EMOREG_STATE_CACHE", str(tmp_path / "fresh"))
    engine_states = llm_states.entering_states(model, [list(k) for k in keys], 1)
    reference = head_model(tiny_llama, state_cache=False, **SETTINGS | {"epochs": 1})
    reference._setup()
    reference._load()
    torch_states = llm_states.entering_states(reference, [list(k) for k in keys], 1)
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(engine_states, torch_states))
    model.params["prefix_dtype"] = "int8"  # and on to OpenVINO's int8 weights: another engine, other states
    llm_states.CACHE.forget()
    int8_states = llm_states.entering_states(model, [list(k) for k in keys], 1)
    assert ("openvino", (1,), False, True) in model.prefix_engines_
    assert any(not torch.allclose(a, b, atol=1e-4) for a, b in zip(int8_states, torch_states))
