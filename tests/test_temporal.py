"""decode: {temporal: filter|smooth}: a session's labels decoded together by an HMM fitted on training subjects."""

from dataclasses import replace

import numpy as np
import pytest

from emoreg.errors import ValidationError
from emoreg.evaluation.config import config_from_dict
from emoreg.models import make_model
from emoreg.models.temporal import forward, forward_backward
from emoreg.prompts import PromptConfig
from emoreg.segments import Turn
from emoreg.tasks import DEEP_SHAME

TFIDF = {"text": "utterance", "min_df": 1}


def sticky_sessions(n_sessions=60, length=30, k=3, stay=0.9, noise=1.0, seed=0):
    """Label sequences that persist (stay 90% of steps) and noisy per-step probabilities."""
    rng = np.random.default_rng(seed)
    trans = np.full((k, k), (1 - stay) / (k - 1)) + np.eye(k) * (stay - (1 - stay) / (k - 1))
    labels, probas = [], []
    for _ in range(n_sessions):
        z = [rng.integers(k)]
        for _ in range(length - 1):
            z.append(rng.choice(k, p=trans[z[-1]]))
        logits = rng.normal(0, noise, (length, k)) + np.eye(k)[z]
        probas.append(np.exp(logits) / np.exp(logits).sum(1, keepdims=True))
        labels.append(np.array(z))
    return trans, labels, probas


def test_filtering_and_smoothing_beat_per_segment_decisions_on_persistent_labels():
    trans, labels, probas = sticky_sessions()
    start = np.full(3, 1 / 3)
    raw = np.mean([np.mean(p.argmax(1) == z) for z, p in zip(labels, probas)])
    filtered = np.mean([np.mean(forward(p, start, trans).argmax(1) == z) for z, p in zip(labels, probas)])
    smoothed = np.mean([np.mean(forward_backward(p, start, trans).argmax(1) == z) for z, p in zip(labels, probas)])
    assert raw + 0.1 < filtered < smoothed


def _session(toy_split):
    train, test = toy_split
    session = [s for s in test if s.session_id == test[0].session_id]
    assert len(session) >= 4
    return train, session


def test_filter_is_causal_and_live_steps_equal_the_offline_filter(toy_split):
    train, session = _session(toy_split)
    model = make_model("temporal", DEEP_SHAME, PromptConfig(), 0, {"model": "tfidf", "params": TFIDF}).fit(train)
    assert model.transitions_.shape == (7, 7) and np.allclose(model.transitions_.sum(1), 1)
    proba = model.predict_proba(session)
    changed = session[:-1] + [replace(session[-1], transcript=(Turn("B", "Your questions are unfair."),))]
    again = model.predict_proba(changed)
    assert np.allclose(again[:-1], proba[:-1]) and not np.allclose(again[-1], proba[-1])  # only the past counts
    message = None
    raw = model.model_.predict_proba(session)
    for t in range(len(session)):
        message = model.step(message, raw[t])
        assert np.allclose(message, proba[t])


def test_smooth_uses_the_future_and_keeps_unseen_labels_at_zero(toy_split):
    train, session = _session(toy_split)
    params = {"model": "tfidf", "params": TFIDF, "temporal": "smooth"}
    model = make_model("temporal", DEEP_SHAME, PromptConfig(), 0, params).fit(train)
    proba = model.predict_proba(session)
    changed = session[:-1] + [replace(session[-1], transcript=(Turn("B", "Your questions are unfair."),))]
    assert not np.allclose(model.predict_proba(changed)[-2], proba[-2], atol=1e-6)  # the next segment moved it
    seen = {s.label for s in train}
    unseen = [i for i, label in enumerate(DEEP_SHAME.labels) if label not in seen]
    assert unseen and np.all(proba[:, unseen] == 0) and np.allclose(proba.sum(1), 1)


@pytest.mark.parametrize("decode, message", [
    ({"temporal": "viterbi"}, "decode.temporal: expected none, filter or smooth"),
    ({"temporal": "filter", "alpha": 0}, "decode.alpha: expected a smoothing count above 0"),
    ("filter", "decode: expected"),
])
def test_bad_decode_settings_fail_when_the_config_is_read(decode, message):
    with pytest.raises(ValidationError, match=message):
        config_from_dict({"corpus": "deep-example", "model": "tfidf", "decode": decode}, "c.yaml")


def test_the_service_filters_live_from_the_stored_answers_and_says_so(toy_corpus, tmp_path):
    import yaml
    from fastapi.testclient import TestClient

    from emoreg.cli import main
    from emoreg.models import load_model
    from emoreg.segments import Segment
    from emoreg.serve.app import create_app

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"corpus": str(toy_corpus), "task": "deep-shame", "model": "tfidf",
                                      "params": {"min_df": 1, "text": "prompt"}, "decode": {"temporal": "filter"},
                                      "prompt": {"sources": ["history", "utterance"]}}))
    assert main(["train", str(config), "--out", str(tmp_path / "m")]) == 0
    model = load_model(tmp_path / "m")
    texts = ["I am so stupid, it is all my fault.", "Whatever.", "You are the problem here.", "Fine."]
    answers = []
    for restart in (False, True):  # the second client starts a fresh app on the same store
        with TestClient(create_app(load_model(tmp_path / "m"), tmp_path / "s.sqlite")) as c:
            assert c.get("/ready").json()["session_decoding"] == "filter"
            if not restart:
                sid = c.post("/sessions", json={}).json()["session_id"]
            for text in (texts[:2] if not restart else texts[2:]):
                answers.append(c.post(f"/sessions/{sid}/segments",
                                      json={"turns": [{"speaker": "B", "text": text}]}).json()["proba"])
    segments = [Segment(f"x{i}", sid, sid, transcript=tuple(Turn("B", t) for t in texts[:i + 1]))
                for i in range(len(texts))]
    offline = model.predict_proba(segments)  # the same session, filtered offline
    got = np.array([[a[label] for label in model.labels_] for a in answers])
    assert np.allclose(got, offline, atol=1e-9)


def test_forward_filtering_equals_a_two_step_example_by_hand():
    start = np.array([0.5, 0.5])
    trans = np.array([[0.9, 0.1], [0.2, 0.8]])
    e = np.array([[0.6, 0.4], [0.3, 0.7]])
    # step 1: p(z1) ∝ start * e1 = [0.30, 0.20] -> [0.6, 0.4]
    # step 2: prior = [0.6, 0.4] @ trans = [0.62, 0.38]; ∝ prior * e2 = [0.186, 0.266] -> [0.4115, 0.5885]
    got = forward(e, start, trans)
    assert np.allclose(got[0], [0.6, 0.4])
    assert np.allclose(got[1], [0.186 / 0.452, 0.266 / 0.452])
    # smoothing, step 1: p(z1 | x1, x2) ∝ [0.6, 0.4] * (trans @ e2) = [0.6 * 0.34, 0.4 * 0.62]
    smooth = forward_backward(e, start, trans)
    assert np.allclose(smooth[0], np.array([0.204, 0.248]) / 0.452)
    assert np.allclose(smooth[1], got[1])  # the last step has no future
