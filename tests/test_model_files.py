"""A model folder is data, not code: what the built-in models save loads without running anything,
and a folder made to run code is refused before it can (issue: hostile input, "a model folder runs code")."""

from __future__ import annotations

import os
import pickle

import joblib
import numpy as np
import pytest
import skops.io
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emoreg.errors import EmoregError
from emoreg.models import load_model, make_model
from emoreg.models.base import FITTED_FILE
from emoreg.prompts import PromptConfig
from emoreg.tasks import DEEP_SHAME


class _RunsCode:
    """What a crafted pickle does: unpickling calls ``open(marker, "w")``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class _Foreign:
    """A class of another package than scikit-learn."""


def _fitted_tfidf(train, folder):
    model = make_model("tfidf", DEEP_SHAME, PromptConfig(), 0, {"text": "prompt", "min_df": 1}).fit(train)
    model.save(folder)
    return model


@pytest.mark.parametrize("name, params, sources", [
    ("majority", {}, None), ("stratified", {}, None), ("tfidf", {"text": "prompt", "min_df": 1}, None),
    ("bayesnet", {"structure": "learned"}, ("context", "person", "nonverbal")),
    ("calibrated", {"model": "tfidf", "params": {"min_df": 1}, "method": "vector"}, None),
])
def test_saved_folders_hold_no_pickle_and_load_the_same_model(name, params, sources, toy_split, tmp_path):
    train, test = toy_split
    prompt = PromptConfig(sources=sources) if sources else PromptConfig()
    model = make_model(name, DEEP_SHAME, prompt, 0, params).fit(train)
    model.save(tmp_path / "m")
    files = [p for p in (tmp_path / "m").rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".joblib", ".pkl", ".pt")]
    for path in files:
        if path.name == FITTED_FILE:  # every type in it is one skops trusts by default
            assert skops.io.get_untrusted_types(file=path) == [], path
        else:
            assert path.suffix in (".json", ".safetensors"), path
    again = load_model(tmp_path / "m")
    assert np.array_equal(again.predict_proba(test), model.predict_proba(test))


def test_a_pickle_in_a_model_folder_is_not_run(toy_split, tmp_path, monkeypatch):
    """A folder as emoreg 0.1 saved it, its model.joblib replaced by one that runs code: refused,
    the code not run, and the message says how to go on."""
    monkeypatch.delenv("EMOREG_TRUST_PICKLE", raising=False)
    folder = tmp_path / "m"
    _fitted_tfidf(toy_split[0], folder)
    (folder / FITTED_FILE).unlink()
    marker = tmp_path / "ran"
    (folder / "model.joblib").write_bytes(pickle.dumps(_RunsCode(marker)))
    with pytest.raises(EmoregError, match=r"pickle \(model.joblib\), which runs code.*EMOREG_TRUST_PICKLE=1"):
        load_model(folder)
    assert not marker.exists()


def test_an_old_pickled_folder_loads_when_trusted(toy_split, tmp_path, monkeypatch):
    train, test = toy_split
    folder = tmp_path / "m"
    model = _fitted_tfidf(train, folder)
    (folder / FITTED_FILE).unlink()
    joblib.dump(model, folder / "model.joblib")  # what emoreg 0.1 wrote
    monkeypatch.setenv("EMOREG_TRUST_PICKLE", "1")
    assert np.array_equal(load_model(folder).predict_proba(test), model.predict_proba(test))


def test_a_fitted_file_with_foreign_types_is_refused_before_it_is_built(toy_split, tmp_path):
    folder = tmp_path / "m"
    _fitted_tfidf(toy_split[0], folder)
    skops.io.dump({"model_": _Foreign(), "hook_": os.system}, folder / FITTED_FILE)
    with pytest.raises(EmoregError, match="holds types that emoreg does not load.*_Foreign"):
        load_model(folder)


def test_a_fitted_file_that_is_not_skops_is_a_clear_error(toy_split, tmp_path):
    folder = tmp_path / "m"
    _fitted_tfidf(toy_split[0], folder)
    (folder / FITTED_FILE).write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(EmoregError, match="cannot be loaded .*damaged or incomplete"):
        load_model(folder)


def _same_json(a: bytes, b: bytes) -> bool:
    import json

    try:
        return json.loads(a) == json.loads(b)
    except ValueError:
        return False


@pytest.fixture
def saved_tfidf(tmp_path, toy_split):
    from emoreg.models.sealing import seal

    _fitted_tfidf(toy_split[0], tmp_path / "sealed")
    return seal(tmp_path / "sealed")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(part=st.sampled_from(["model.json", FITTED_FILE]), at=st.floats(0, 1), junk=st.binary(min_size=1, max_size=8),
       cut=st.booleans())
def test_a_damaged_model_folder_is_refused_in_words(saved_tfidf, tmp_path_factory, part, at, junk, cut):
    """Any file of a sealed model folder cut short or overwritten in places: loading it is an
    EmoregError that names the folder (never a traceback, never other predictions), and the
    folder is left as it was."""
    import shutil

    folder = tmp_path_factory.mktemp("damaged") / "m"
    shutil.copytree(saved_tfidf, folder)
    data = (folder / part).read_bytes()
    i = int(at * (len(data) - 1))
    damaged = data[:i] if cut else data[:i] + junk + data[i + len(junk):]
    if damaged == data:
        return
    (folder / part).write_bytes(damaged)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    if part == "model.json" and _same_json(data, damaged):  # only whitespace changed: nothing was damaged
        assert load_model(folder).labels_ == DEEP_SHAME.labels
        return
    with pytest.raises(EmoregError) as error:
        load_model(folder)
    assert str(folder) in str(error.value)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
