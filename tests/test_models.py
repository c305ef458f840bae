"""Contract tests: every classifier passes the same checks."""

import numpy as np
import pytest

from emoreg.errors import EmoregError
from emoreg.models import MODELS, NotFittedError, load_model, make_model
from emoreg.prompts import PromptConfig
from emoreg.tasks import DEEP_SHAME

CASES = {
    "majority": {},
    "stratified": {},
    "tfidf": {"text": "prompt", "min_df": 1},
    "embedding": {},
    "llm": None,  # tests/test_llm.py (needs the tiny Llama fixture)
    "llm-features": None,  # tests/test_llm.py
    "replay": None,  # tests/test_replay.py (needs a finished run)
    "bayesnet": {"structure": "naive"},
    "ensemble": {"members": [{"model": "tfidf", "params": {"text": "prompt", "min_df": 1}}, {"model": "majority"}]},
    "encoder-ft": {"epochs": 1, "max_length": 32},
    "temporal": {"model": "tfidf", "params": {"text": "prompt", "min_df": 1}, "temporal": "smooth"},
    "calibrated": {"model": "tfidf", "params": {"text": "prompt", "min_df": 1}, "method": "vector",
                   "decide": "macro-f1"},
}


def test_every_registered_model_has_a_case():
    assert set(CASES) == set(MODELS)


@pytest.mark.parametrize("name", sorted(n for n, params in CASES.items() if params is not None))
def test_contract(name, toy_split, tmp_path):
    train, test = toy_split
    model = make_model(name, DEEP_SHAME, PromptConfig(), seed=0, params=CASES[name])
    with pytest.raises(NotFittedError, match="call fit"):
        model.predict(test)
    assert model.fit(train) is model
    assert model.labels_ == DEEP_SHAME.labels
    proba = model.predict_proba(test)
    assert proba.shape == (len(test), 7)
    assert np.all(proba >= 0) and np.allclose(proba.sum(axis=1), 1)
    assert model.predict(test) == [DEEP_SHAME.labels[i] for i in proba.argmax(axis=1)]
    # labels never seen in training get no probability
    unseen = [DEEP_SHAME.index(l) for l in DEEP_SHAME.labels if l not in {s.label for s in train}]
    assert np.all(proba[:, unseen] == 0)
    # save / load round trip
    model.save(tmp_path / name)
    again = load_model(tmp_path / name)
    assert np.allclose(again.predict_proba(test), proba)
    # same seed, same data: same output; order of test segments does not matter
    twin = make_model(name, DEEP_SHAME, PromptConfig(), seed=0, params=CASES[name]).fit(train)
    assert np.allclose(twin.predict_proba(test), proba)
    assert np.allclose(twin.predict_proba(test[::-1]), proba[::-1])


@pytest.mark.parametrize("name", ["tfidf", "embedding", "bayesnet"])
def test_learners_learn_the_toy_task(name, toy_split):
    train, test = toy_split
    model = make_model(name, DEEP_SHAME, PromptConfig(), seed=0, params=CASES[name]).fit(train)
    accuracy = np.mean([p == s.label for p, s in zip(model.predict(test), test)])
    assert accuracy >= 0.9, accuracy


def test_unknown_model_and_parameter_are_clear_errors():
    with pytest.raises(EmoregError, match="unknown model 'bert'; choose from: bayesnet, calibrated, embedding"):
        make_model("bert", DEEP_SHAME, PromptConfig(), 0, {})
    with pytest.raises(EmoregError, match=r"model 'tfidf' has no parameter\(s\) alpha \(valid: C, class_weight"):
        make_model("tfidf", DEEP_SHAME, PromptConfig(), 0, {"alpha": 1})


def test_fit_needs_labels(toy_split):
    train, _ = toy_split
    from dataclasses import replace

    with pytest.raises(EmoregError, match="1 training segment\\(s\\) have no label"):
        make_model("majority", DEEP_SHAME, PromptConfig(), 0, {}).fit([replace(train[0], label=None)] + train[1:])


def test_bayesnet_variables_follow_the_sources(toy_split):
    train, _ = toy_split
    full = make_model("bayesnet", DEEP_SHAME, PromptConfig(), 0, {"structure": "naive"}).fit(train)
    assert set(full.describe()["variables"]) == {"nv_frown", "feature_gaze", "person_age"}  # context is constant
    only_person = make_model("bayesnet", DEEP_SHAME, PromptConfig(sources=("person",)), 0,
                             {"structure": "naive"}).fit(train)
    assert set(only_person.describe()["variables"]) == {"person_age"}
    with pytest.raises(EmoregError, match="give no variable that varies"):
        make_model("bayesnet", DEEP_SHAME, PromptConfig(sources=("utterance",)), 0, {}).fit(train)


def test_bayesnet_expert_structure(toy_split, tmp_path):
    train, test = toy_split
    path = tmp_path / "net.yaml"
    path.write_text("edges:\n  - [strategy, feature_gaze]\n")
    model = make_model("bayesnet", DEEP_SHAME, PromptConfig(), 0, {"structure": str(path)}).fit(train)
    assert model.describe()["edges"] == [["strategy", "feature_gaze"]]
    path.write_text("edges:\n  - [strategy, gaze]\n")
    with pytest.raises(EmoregError, match="unknown variable\\(s\\) gaze"):
        make_model("bayesnet", DEEP_SHAME, PromptConfig(), 0, {"structure": str(path)}).fit(train)


def test_bayesnet_without_evidence_predicts_the_prior(toy_split):
    train, test = toy_split
    rest = [s for s in train if s.label == "Rest"]
    train = [s for s in train if s.label != "Rest"] + rest[: len(rest) // 4]  # unequal classes: prior != uniform
    # person_age is noise: hill climbing with BIC leaves the strategy unconnected
    model = make_model("bayesnet", DEEP_SHAME, PromptConfig(sources=("person",)), 0, {"structure": "learned"}).fit(train)
    assert model.describe()["edges"] == []
    proba = model.predict_proba(test)
    counts = {label: sum(s.label == label for s in train) for label in DEEP_SHAME.labels}
    expected = [counts[label] / len(train) for label in DEEP_SHAME.labels]
    assert proba[0].tolist() == pytest.approx(expected, abs=0.04)  # BDeu smoothing moves it a little
    assert abs(proba[0][DEEP_SHAME.index("Rest")] - 1 / 3) > 0.15  # not the uniform of a "balanced" no-evidence model
