"""head: classify on the tiny Llama: a label head on the last prompt token, only the top layers
tuned, the states entering them cached (and equal to a full forward pass)."""

import re
import sys

import numpy as np
import pytest
import torch

from emoreg.errors import EmoregError
from emoreg.models import load_model, make_model
from emoreg.models.llm import cut as llm_cut
from emoreg.models.llm import head as llm_head
from emoreg.models.llm import states as llm_states
from emoreg.prompts import PromptConfig
from emoreg.tasks import DEEP_SHAME


def head_model(folder, **params):
    settings = {"model": folder, "epochs": 10, "batch_size": 8, "lr": 1e-2, "lora_r": 8, "lora_alpha": 16,
                "lora_dropout": 0.0, "system": None, "dtype": "fp32", "head": "classify",
                "checkpoint_minutes": None,
                # the head's settings before its defaults became the measured recipe (test_llm_auto_depth)
                "layers": None, "tune_layers": None, "tune": "lora", "class_weight": None, "score_batch": 8} | params
    return make_model("llm", DEEP_SHAME, PromptConfig(sources=("utterance",), template="emoreg-v1-compact"),
                      seed=0, params=settings)


@pytest.fixture(autouse=True)
def empty_state_cache(tmp_path, monkeypatch):
    """Each test starts as a new process would, with its own on-disk cache."""
    monkeypatch.setenv("EMOREG_STATE_CACHE", str(tmp_path / "states"))
    llm_states.CACHE.forget()


@pytest.mark.parametrize("tune", ["lora", "full"])
def test_head_on_the_top_layer_learns_and_round_trips(tiny_llama, toy_split, tmp_path, tune):
    train, test = toy_split
    model = head_model(tiny_llama, tune_layers=1, tune=tune, lr=1e-2 if tune == "lora" else 3e-3).fit(train)
    proba = model.predict_proba(test)
    assert np.allclose(proba.sum(axis=1), 1)
    assert np.mean([p == s.label for p, s in zip(model.predict(test), test)]) == 1.0
    facts = model.describe()
    assert facts["head"] == "classify" and facts["first_tuned_layer"] == 1
    losses = [h["loss"] for h in facts["loss"]]
    assert len(losses) == 10 * 6 and np.mean(losses[-6:]) < np.mean(losses[:6]) / 5
    model.save(tmp_path / "m")
    assert (tmp_path / "m" / llm_head.HEAD_FILE).is_file()
    assert (tmp_path / "m" / "adapter").is_dir() == (tune == "lora")
    again = load_model(tmp_path / "m")
    assert np.allclose(again.predict_proba(test), proba, atol=1e-6)


def test_only_the_top_layers_are_trained(tiny_llama, toy_split):
    train, _ = toy_split
    lora = head_model(tiny_llama, tune_layers=1, epochs=1).fit(train)
    names = [n for n, p in lora.model_.named_parameters() if p.requires_grad]
    assert names and all(".layers.1." in n and "lora_" in n for n in names)
    full = head_model(tiny_llama, tune_layers=1, tune="full", epochs=1)
    full.fit(train)
    bottom = [p for n, p in full.model_.named_parameters() if ".layers.0." in n]
    fresh = head_model(tiny_llama, tune_layers=1, tune="full", epochs=0).fit(train)
    fresh_bottom = [p for n, p in fresh.model_.named_parameters() if ".layers.0." in n]
    assert all(torch.equal(a, b) for a, b in zip(bottom, fresh_bottom))  # layer 0 untouched
    top = [p for n, p in full.model_.named_parameters() if ".layers.1." in n]
    fresh_top = [p for n, p in fresh.model_.named_parameters() if ".layers.1." in n]
    assert not all(torch.equal(a, b) for a, b in zip(top, fresh_top))


@pytest.mark.parametrize("tune_layers", [1, 2])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("architecture", ["tiny_llama", "tiny_qwen2", "tiny_gemma3"])
def test_the_top_layer_at_the_last_token_is_the_whole_layer_read_there(request, architecture, toy_split, dtype,
                                                                        tune_layers):
    """The top layer computed at the last prompt token only gives the logits and the gradients of
    the whole layer, with the states padded to different lengths, for Llama's layer, Qwen2's and
    Gemma 3's (its prompts are longer than its local layer's window of 4)."""
    train, test = toy_split
    folder = request.getfixturevalue(architecture)
    model = head_model(folder, tune_layers=tune_layers, tune="full", epochs=1, dtype=dtype).fit(train[:16])
    start = 2 - tune_layers
    prefixes = [model._prefix_ids(s) for s in test[:6]]
    prefixes[0] = prefixes[0] + prefixes[1][-4:]
    states = llm_states.entering_states(model, prefixes, start)
    _, decoder = llm_cut.decoder_of(model.model_)
    assert llm_head.last_token.supported(decoder, decoder.layers[-1])  # the fast path is what is tested
    tuned = [p for p in model.model_.parameters() if p.requires_grad] + list(model.head_.parameters())
    results = []
    for last_only in (True, False):
        logits = llm_head.label_logits(model, states, start, last_only=last_only)
        grads = torch.autograd.grad(logits.logsumexp(-1).sum() + logits[:, 0].sum(), tuned)
        results.append((logits.detach(), grads))
    tol = {"fp32": 1e-5, "bf16": 3e-2}[dtype]
    (fast, fast_grads), (whole, whole_grads) = results
    assert fast.shape == (6, len(DEEP_SHAME.labels)) and torch.allclose(fast, whole, atol=tol)
    for a, b in zip(fast_grads, whole_grads):
        assert torch.allclose(a, b, atol=tol * max(1.0, float(b.abs().max())))


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("architecture", ["tiny_llama", "tiny_gemma3"])
@pytest.mark.parametrize("last_only", [True, False])
def test_cached_states_and_the_top_pass_equal_one_full_forward(request, architecture, toy_split, dtype, last_only):
    """The hook captures exactly the states entering the first tuned layer, and running only the
    tuned layers on them gives the logits of the whole model's last hidden state: also for Gemma 3,
    whose tuned global layer must keep its own mask and rotary table when run apart from the
    local layer below it (whole, ``last_only=False``, or at the last token)."""
    train, test = toy_split
    model = head_model(request.getfixturevalue(architecture), tune_layers=1, epochs=1, dtype=dtype).fit(train[:16])
    prefixes = [model._prefix_ids(s) for s in test[:5]]
    prefixes[0] = prefixes[0] + prefixes[1][-4:]  # different lengths: padding is exercised
    states = llm_states.entering_states(model, prefixes, 1)
    tol = {"fp32": 1e-5, "bf16": 3e-2}[dtype]
    with torch.inference_mode(), model._autocast():
        for p, s in zip(prefixes, states):
            out = model.model_(input_ids=torch.tensor([p]), output_hidden_states=True)
            assert torch.allclose(s.float(), out.hidden_states[1][0].float(), atol=tol)
            base = model.model_.get_base_model().model
            last = base(input_ids=torch.tensor([p])).last_hidden_state[0, -1]
            expected = torch.softmax(model.head_(last.float()), -1)
            got = torch.softmax(llm_head.label_logits(model, [s], 1, last_only=last_only), -1)[0]
            assert torch.allclose(got, expected, atol=tol)


def test_states_are_computed_once_and_fit_sees_only_training_prompts(tiny_llama, toy_split):
    train, test = toy_split
    train = [s for s in train if int(s.segment_id[-2:]) < 6]  # utterances "... number 0-5" only
    model = head_model(tiny_llama, tune_layers=1, epochs=2).fit(train)
    train_prompts = {tuple(model._prefix_ids(s)) for s in train}
    test_prompts = {tuple(model._prefix_ids(s)) for s in test}
    assert test_prompts - train_prompts  # some test prompts are new
    assert model.fit_report.states_computed == len(train_prompts) and set(llm_states.CACHE.states) == train_prompts
    model.predict_proba(test)  # test prompts enter the cache only when predicting
    assert set(llm_states.CACHE.states) == train_prompts | test_prompts
    second = head_model(tiny_llama, tune_layers=1, epochs=2).fit(train)  # the next fold of a run
    assert second.fit_report.states_computed == 0 and second.fit_report.states_reused == len(train)
    assert np.array_equal(second.predict_proba(test), model.predict_proba(test))  # same seed, same result


def test_head_init_labels_starts_as_the_label_token_softmax(tiny_llama, toy_split):
    train, test = toy_split
    model = head_model(tiny_llama, epochs=0).fit(train)  # untrained: the LM restricted to label tokens
    prefix = model._prefix_ids(test[0])
    with torch.inference_mode():
        logits = model.model_(input_ids=torch.tensor([prefix])).logits[0, -1]
    first = torch.tensor([ids[0] for ids in model.label_ids_])
    restricted = logits[first]
    restricted[model.unseen_] = -torch.inf  # labels absent from training get no probability, as every model's
    assert model.unseen_ == [1, 3, 4, 5]  # the toy corpus uses Withdrawal, Attack Other and Rest only
    assert np.allclose(model.predict_proba(test[:1])[0], torch.softmax(restricted, -1).numpy(), atol=1e-5)


def test_layers_truncates_the_decoder_and_the_head_reads_that_layer(tiny_llama, toy_split, tmp_path):
    """layers: 1 of the tiny Llama's 2: the untrained head sees the final norm of the state after
    layer 0, the same state the whole model computes there; the truncation survives a reload."""
    train, test = toy_split
    model = head_model(tiny_llama, layers=1, epochs=0).fit(train)
    assert len(llm_cut.decoder_of(model.model_)[1].layers) == 1 and model.describe()["layers"] == 1
    whole = head_model(tiny_llama, epochs=0).fit(train)  # the untruncated model, same frozen weights
    prefix = model._prefix_ids(test[0])
    with torch.inference_mode():
        after_first = whole.model_(input_ids=torch.tensor([prefix]), output_hidden_states=True).hidden_states[1]
        decoder = llm_cut.decoder_of(whole.model_)[1]
        logits = model.head_(decoder.norm(after_first)[0, -1].float())
        logits[model.unseen_] = -torch.inf
    assert np.allclose(model.predict_proba(test[:1])[0], torch.softmax(logits, -1).numpy(), atol=1e-5)
    assert not np.allclose(model.predict_proba(test[:1]), whole.predict_proba(test[:1]), atol=1e-3)
    trained = head_model(tiny_llama, layers=1, tune_layers=1, tune="full", epochs=2, lr=3e-3).fit(train)
    trained.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert len(llm_cut.decoder_of(again.model_)[1].layers) == 1
    assert np.allclose(again.predict_proba(test), trained.predict_proba(test), atol=1e-6)


@pytest.mark.parametrize("params, message", [
    ({"tune": "full", "head": "lm"}, "tune full (every weight of the tuned layers) needs head: classify"),
    ({"tune_layers": 0}, "tune_layers must be a whole number of at least 1, or null, found 0"),
    ({"tune_layers": 5}, "tune_layers (5) exceeds the 2 layers of "),  # the folder's config.json, no weights read
    ({"head": "mlp"}, "head must be one of lm, classify, found 'mlp'"),
    ({"decode": "generate"}, "head classify predicts from its label head; set decode to score"),
    ({"layers": 3}, "layers (3) exceeds the 2 layers of "),
    ({"layers": 0}, "layers must be a whole number of at least 1, auto, ensemble, or null, found 0"),
    ({"layers": 1, "tune_layers": 2}, "tune_layers (2) cannot exceed layers (1)"),
    ({"layers": 1, "head": "lm"}, "layers (a truncated decoder) needs head: classify"),
    ({"state_layers": [0], "head": "lm"}, "state_layers (more layers' states kept on disk) needs head: classify"),
    ({"state_layers": [0], "state_cache": False}, "needs head: classify and state_cache: true"),
    ({"state_layers": [1], "layers": 1}, "state_layers [1] must each be below layers (1)"),
    ({"state_layers": []}, "state_layers must be a non-empty list of distinct whole numbers of at least 0"),
    ({"state_layers": [0, 0]}, "state_layers must be a non-empty list of distinct whole numbers"),
])
def test_bad_head_settings_are_clear_errors(tiny_llama, toy_split, params, message):
    with pytest.raises(EmoregError, match=re.escape(message)):
        head_model(tiny_llama, epochs=1, **params).fit(toy_split[0][:8])


@pytest.mark.parametrize("architecture", ["tiny_llama", "tiny_gemma3"])
def test_one_pass_keeps_the_states_of_several_layers(request, architecture, toy_split):
    """``state_layers``: the pass to the tuned layer also keeps the states entering a lower one, so
    a later run tuning from that layer computes nothing, and finds the very states a pass of its
    own would have computed."""
    train, test = toy_split
    folder = request.getfixturevalue(architecture)
    deep = head_model(folder, tune_layers=1, epochs=1, state_layers=[0]).fit(train)  # reads layer 1, keeps 0
    assert deep.fit_report.states_computed == len({tuple(deep._prefix_ids(s)) for s in train})
    llm_states.CACHE.forget()  # a new process
    shallow = head_model(folder, tune_layers=2, epochs=1).fit(train)  # reads layer 0
    assert shallow.fit_report.states_computed == 0 and shallow.fit_report.states_reused == len(train)
    kept = dict(llm_states.CACHE.states)
    llm_states.CACHE.forget()
    fresh = head_model(folder, tune_layers=2, epochs=1, state_cache=False).fit(train)
    assert fresh.fit_report.states_computed > 0 and set(llm_states.CACHE.states) == set(kept)
    assert all(torch.equal(kept[k], v) for k, v in llm_states.CACHE.states.items())
    assert np.array_equal(shallow.predict_proba(test), fresh.predict_proba(test))


def test_states_persist_on_disk_for_the_next_process(tiny_llama, toy_split, tmp_path):
    train, test = toy_split
    first = head_model(tiny_llama, tune_layers=1, epochs=1).fit(train)
    proba = first.predict_proba(test)
    shards = list((tmp_path / "states").glob("*/shard-*.pt"))
    assert shards and not list((tmp_path / "states").glob("*/.shard-*"))
    llm_states.CACHE.forget()  # a new process
    (shards[0].parent / "shard-cut.pt").write_bytes(b"PK\x03 cut short")  # as a kill mid-write would leave
    again = head_model(tiny_llama, tune_layers=1, epochs=1).fit(train)
    assert again.fit_report.states_computed == 0 and again.fit_report.states_reused == len(train)
    assert np.array_equal(again.predict_proba(test), proba)
    assert not (shards[0].parent / "shard-cut.pt").exists()
    llm_states.CACHE.forget()
    memory_only = head_model(tiny_llama, tune_layers=1, epochs=1, state_cache=False).fit(train)
    assert memory_only.fit_report.states_computed > 0  # state_cache false: nothing read from disk
    other_layer = head_model(tiny_llama, tune_layers=2, epochs=1).fit(train)  # another layer, another folder
    assert other_layer.fit_report.states_computed > 0 and len(list((tmp_path / "states").iterdir())) == 2


def _mapped_file(tensor) -> str | None:
    """The file whose memory mapping holds the tensor's data (Linux), or None for heap memory."""
    at = tensor.data_ptr()
    for line in open("/proc/self/maps"):
        fields = line.split(maxsplit=5)
        low, high = (int(x, 16) for x in fields[0].split("-"))
        if low <= at < high:
            return fields[5].strip() if len(fields) == 6 and fields[5].startswith("/") else None
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_cached_states_are_mapped_from_their_shards_not_held_in_the_heap(tiny_llama, toy_split, tmp_path):
    """With the disk cache, the states kept for later epochs and folds are the shards' memory-mapped
    copies (page cache), with the same predictions as states held in memory."""
    train, test = toy_split
    on_disk = head_model(tiny_llama, tune_layers=1, epochs=2).fit(train)
    proba = on_disk.predict_proba(test)
    shards = {str(p) for p in (tmp_path / "states").glob("*/shard-*.pt")}
    states = llm_states.CACHE.states
    assert len(states) == on_disk.fit_report.states_computed > 0  # every distinct prompt of both sets
    assert shards and {_mapped_file(v) for v in states.values()} <= shards
    llm_states.CACHE.forget()
    in_memory = head_model(tiny_llama, tune_layers=1, epochs=2, state_cache=False).fit(train)
    assert {_mapped_file(v) for v in llm_states.CACHE.states.values()} == {None}
    assert np.array_equal(in_memory.predict_proba(test), proba)


def test_the_state_cache_stays_bounded(tiny_llama, toy_split, monkeypatch):
    """A long-lived process (the live service) keeps at most MAX_CACHED prompts; the rest are
    computed, used and dropped, with the same predictions."""
    train, test = toy_split
    model = head_model(tiny_llama, tune_layers=1, epochs=1, state_cache=False).fit(train)
    reference = model.predict_proba(test)
    monkeypatch.setattr(llm_states, "MAX_CACHED", 3)
    llm_states.CACHE.states.clear()
    assert np.allclose(model.predict_proba(test), reference, atol=1e-6)
    assert len(llm_states.CACHE.states) == 3 and model.fit_report.states_computed > len(train)


def test_labels_of_very_different_lengths_are_learned_alike(tiny_llama, toy_split):
    """A task mixing a one-letter label with a seven-word one: one logit each, so the long label is
    predicted as readily as the short (the label scorer sums one log-probability per token)."""
    from dataclasses import replace

    from emoreg.tasks import Task

    names = {"Withdrawal": "Affirmation and Reassurance of the Other Person", "Rest": "Q",
             "Attack Other": "Attack Other"}
    task = Task(name="lengths", labels=tuple(names.values()),
                definitions={v: f"{v}." for v in names.values()})
    train, test = ([replace(s, label=names[s.label]) for s in part] for part in toy_split)
    model = make_model("llm", task, PromptConfig(sources=("utterance",), template="emoreg-v1-compact"), seed=0,
                       params={"model": tiny_llama, "head": "classify", "layers": None, "tune_layers": 1, "epochs": 10,
                               "lr": 1e-2, "system": None, "dtype": "fp32", "state_cache": False})
    model.fit(train)
    assert [len(ids) for ids in model.label_ids_][:2] == [8, 2]  # 7 words + end of turn, 1 letter + end
    predicted = model.predict(test)
    assert set(predicted) == set(task.labels)
    assert np.mean([p == s.label for p, s in zip(predicted, test)]) == 1.0


def test_a_long_states_pass_collects_garbage_and_one_prompt_only_trims(tiny_llama, toy_split, monkeypatch):
    """A full garbage collection after the states pass returns a long pass's memory, but it costs more
    than one prompt's pass (the live service's case), so a short pass only trims the heap."""
    train, test = toy_split
    calls = []
    monkeypatch.setattr(llm_head.heap, "release", lambda: calls.append("release"))
    monkeypatch.setattr(llm_head.heap, "trim", lambda: calls.append("trim"))
    model = head_model(tiny_llama, tune_layers=1, epochs=1, score_batch=1, state_cache=False).fit(train)
    assert len(train) > llm_states.TRIM_EVERY and "release" in calls  # a pass of every training prompt
    calls.clear()
    llm_states.CACHE.forget()  # as a new process: every prompt unseen
    model.predict_proba(test[:1])  # one prompt
    assert calls == ["trim"]
    calls.clear()
    model.predict_proba(test[:1])  # seen: nothing computed, nothing to hand back
    assert calls == []


def test_a_sliding_window_layer_runs_whole():
    """Qwen2 with a sliding window attends to a band, not to every position: no last-token path."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    shape = dict(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2)
    for window, fast in ((False, True), (True, False)):
        config = Qwen2Config(**shape, use_sliding_window=window, sliding_window=4, max_window_layers=0)
        _, decoder = llm_cut.decoder_of(Qwen2ForCausalLM(config))
        assert llm_head.last_token.supported(decoder, decoder.layers[-1]) is fast


def test_a_scalar_mix_of_a_lower_layer_learns_round_trips_and_reports_its_weights(tiny_llama, toy_split, tmp_path):
    """``mix_layers``: the head reads the tuned layer's output mixed with the last-token state
    entering a lower layer; the weights start at half on the tuned layer, train, save and load."""
    train, test = toy_split
    model = head_model(tiny_llama, layers=2, tune_layers=1, tune="full", mix_layers=[0], epochs=10).fit(train)
    weights = model.describe()["mix_weights"]
    assert len(weights) == 2 and abs(sum(weights) - 1) < 1e-3 and weights != [0.5, 0.5]  # trained from 0.5/0.5
    assert np.mean([p == s.label for p, s in zip(model.predict(test), test)]) > 0.9
    model.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert np.allclose(again.predict_proba(test), model.predict_proba(test), atol=1e-6)
    plain = head_model(tiny_llama, layers=2, tune_layers=1, tune="full", epochs=10).fit(train)
    assert not np.allclose(plain.predict_proba(test), model.predict_proba(test))
    with pytest.raises(EmoregError, match=re.escape("mix_layers [1] must each be below the first tuned layer (1)")):
        head_model(tiny_llama, layers=2, tune_layers=1, mix_layers=[1]).fit(train)


def test_an_int8_prefix_keeps_the_decisions_and_its_states_are_never_mixed_with_float_ones(
        tiny_llama, toy_split, monkeypatch, tmp_path):
    """prefix_dtype int8: the frozen layer below the head quantised (the tiny model has one, so no
    layer is kept in float here); the head trained on its states makes the float reference's
    decisions; its states live in a cache of their own, and a float run afterwards reuses only the
    float states."""
    from emoreg.models.llm import prefix

    monkeypatch.setattr(prefix, "FLOAT_LAYERS", 0)
    train, test = toy_split
    settings = {"layers": 2, "tune_layers": 1, "tune": "full", "epochs": 10}
    reference = head_model(tiny_llama, **settings).fit(train)
    float_states = {k: v.clone() for k, v in llm_states.CACHE.states.items()}
    quantised = head_model(tiny_llama, prefix_dtype="int8", **settings).fit(train)
    assert quantised.fit_report.states_computed == len(float_states)  # none taken from the float cache
    _, decoder = llm_cut.decoder_of(quantised.model_)
    assert "DynamicQuantizedLinear" not in repr(decoder.layers)  # the model's own layers stay float:
    assert "DynamicQuantizedLinear" in repr(quantised.prefix_engines_["int8", 1][0])  # the pass ran int8 copies
    int8_states = llm_states.CACHE.states
    cosines = torch.cat([torch.nn.functional.cosine_similarity(int8_states[k].float(), v.float(), dim=-1)
                         for k, v in float_states.items()])  # per token
    assert cosines.mean() > 0.99 and cosines.min() > 0.95  # close, and not the float states themselves:
    assert any(not torch.equal(int8_states[k], v) for k, v in float_states.items())
    assert reference.predict(test) == quantised.predict(test)
    assert quantised.describe()["prefix_dtype"] == "int8"
    quantised.params["prefix_dtype"] = "same"  # the same classifier switched back: float states again
    llm_states.CACHE.forget()
    monkeypatch.setenv("EMOREG_STATE_CACHE", str(tmp_path / "fresh"))  # computed, not read from disk
    keys = list(float_states)[:3]
    assert all(torch.allclose(state, float_states[k], atol=1e-6)
               for state, k in zip(llm_states.entering_states(quantised, [list(k) for k in keys], 1), keys))
    monkeypatch.setenv("EMOREG_STATE_CACHE", str(tmp_path / "states"))
    llm_states.CACHE.forget()  # a new process
    again = head_model(tiny_llama, **settings).fit(train)
    assert again.fit_report.states_computed == 0 and all(torch.equal(llm_states.CACHE.states[k], v)
                                               for k, v in float_states.items())
    with pytest.raises(EmoregError, match="prefix_dtype int8 .* needs head: classify and dtype: fp32"):
        head_model(tiny_llama, prefix_dtype="int8", dtype="bf16", **settings).fit(train)


def test_a_shared_prefix_is_found_and_leaves_each_prompt_a_token():
    assert llm_states.shared_prefix([(1, 2, 3, 4), (1, 2, 5), (1, 2, 3)]) == 2
    assert llm_states.shared_prefix([(7, 8), (7, 8)]) == 1  # identical prompts: the last token runs per prompt
    assert llm_states.shared_prefix([(1, 2, 3)]) == 0  # one prompt alone: nothing to share
    assert llm_states.shared_prefix([(1, 2), (3, 2)]) == 0


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("architecture", ["tiny_llama", "tiny_qwen2", "tiny_gemma3"])
def test_a_prefix_common_to_a_batch_runs_once_and_the_states_stay_the_same(request, architecture, toy_split,
                                                                            dtype, monkeypatch):
    """The instruction every prompt begins with runs once per batch, the rest of each prompt
    attending to its keys and values: the states entering each kept layer are the whole pass's,
    also through Gemma 3's sliding-window layer (window 4, prompts far longer), with padding, and
    fewer tokens run (the fit report counts them)."""
    train, test = toy_split
    model = head_model(request.getfixturevalue(architecture), tune_layers=1, epochs=1, dtype=dtype,
                       state_cache=False).fit(train[:4])
    prefixes = [model._prefix_ids(s) for s in test[:7]]
    prefixes[0] = prefixes[0] + prefixes[1][-5:]  # different lengths: padding after the shared part
    common = llm_states.shared_prefix([tuple(p) for p in prefixes])
    assert common >= llm_states.MIN_SHARED and min(map(len, prefixes)) - common > 4  # past Gemma's window
    before = model.fit_report.states_tokens_shared
    shared = llm_states.entering_states(model, prefixes, 1, also=[0])
    assert model.fit_report.states_tokens_shared - before > 0
    lower_shared = dict(llm_states.load_shards(llm_states.cache_folder(model, 0)) or {})
    llm_states.CACHE.forget()
    monkeypatch.setattr(llm_states, "MIN_SHARED", 10 ** 6)  # every prompt run whole, the kept prefix too
    before = model.fit_report.states_tokens_shared
    whole = llm_states.entering_states(model, prefixes, 1)
    assert model.fit_report.states_tokens_shared == before
    tol = {"fp32": 1e-5, "bf16": 3e-2}[dtype]
    for a, b in zip(shared, whole):
        assert a.shape == b.shape and torch.allclose(a.float(), b.float(), atol=tol)
    with torch.inference_mode(), model._autocast():  # the lower layer kept by the same pass, against a forward
        for p in prefixes:
            out = model.model_(input_ids=torch.tensor([p]), output_hidden_states=True)
            assert torch.allclose(lower_shared.get(tuple(p), out.hidden_states[0][0]).float(),
                                  out.hidden_states[0][0].float(), atol=tol)


@pytest.mark.parametrize("architecture", ["tiny_llama", "tiny_gemma3"])
def test_prompts_scored_alone_reuse_the_prefix_they_share(request, architecture, toy_split):
    """The live service scores one prompt at a time: the second prompt runs what it shares with the
    first as a prefix of its own, and every later one reuses its keys and values; the states stay those of a whole pass, and a prompt
    that shares nothing runs whole."""
    train, test = toy_split
    model = head_model(request.getfixturevalue(architecture), tune_layers=1, epochs=1,
                       state_cache=False).fit(train[:4])
    model.__dict__.pop("shared_prefixes_", None)  # a model loaded in the service: nothing kept yet
    prefixes = [model._prefix_ids(s) for s in test[:4]]
    saved = []
    for p in prefixes:
        before = model.fit_report.states_tokens_shared
        (state,) = llm_states.entering_states(model, [p], 1)
        saved.append(model.fit_report.states_tokens_shared - before)
        with torch.inference_mode():
            whole = model.model_(input_ids=torch.tensor([p]), output_hidden_states=True).hidden_states[1][0]
        assert torch.allclose(state, whole, atol=1e-5)
    common = llm_states.shared_prefix([tuple(p) for p in prefixes[:2]])
    assert saved[:2] == [0, 0] and saved[2] == saved[3] == common >= llm_states.MIN_SHARED  # the 2nd runs it
    (kept,) = model.shared_prefixes_.values()
    assert kept["last"][0] == tuple(prefixes[0][:common])
    stranger = [prefixes[0][0] + 1] * 12  # begins otherwise: run whole, and remembered for the next
    before = model.fit_report.states_tokens_shared
    llm_states.entering_states(model, [stranger], 1)
    assert model.fit_report.states_tokens_shared == before and kept["last"] == (tuple(stranger), None, None)
    assert "shared_prefixes_" not in model.__getstate__()  # keys and values stay in the process that made them
