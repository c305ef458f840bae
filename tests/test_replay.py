"""model: replay: a finished run's test probabilities read back, under decoding and fusion."""

from __future__ import annotations

import numpy as np
import pytest

from emoreg.errors import EmoregError
from emoreg.evaluation import evaluate
from emoreg.evaluation.config import config_from_dict
from emoreg.runs import read_jsonl

SPLIT = {"kind": "group-kfold", "folds": 3}


def config(corpus, model, params=None, **extra):
    return config_from_dict({"corpus": str(corpus), "task": "deep-shame", "model": model, "params": params or {},
                             "split": SPLIT} | extra, "test")


def predictions(run):
    return sorted(read_jsonl(run / "predictions.jsonl"), key=lambda r: r["segment_id"])


@pytest.fixture()
def tfidf_run(toy_corpus, tmp_path):
    return evaluate(config(toy_corpus, "tfidf"), tmp_path / "tfidf")


def test_replay_gives_the_run_back_and_decodes_as_the_model_would(toy_corpus, tmp_path, tfidf_run):
    again = evaluate(config(toy_corpus, "replay", {"run": str(tfidf_run)}), tmp_path / "again")
    assert predictions(again) == predictions(tfidf_run)
    for method in ("filter", "smooth"):
        replayed = evaluate(config(toy_corpus, "replay", {"run": str(tfidf_run)}, decode={"temporal": method}),
                            tmp_path / f"replayed-{method}")
        direct = evaluate(config(toy_corpus, "tfidf", decode={"temporal": method}), tmp_path / f"direct-{method}")
        assert predictions(replayed) == predictions(direct)
        assert predictions(replayed) != predictions(tfidf_run)  # decoding changed something


def test_replay_fuses_finished_runs(toy_corpus, tmp_path, tfidf_run):
    majority = evaluate(config(toy_corpus, "majority"), tmp_path / "majority")
    members = [{"model": "replay", "params": {"run": str(tfidf_run)}, "name": "a"},
               {"model": "replay", "params": {"run": str(majority)}, "name": "b"}]
    fused = evaluate(config(toy_corpus, "ensemble", {"members": members}), tmp_path / "fused")
    direct = evaluate(config(toy_corpus, "ensemble", {"members": [{"model": "tfidf"}, {"model": "majority"}]}),
                      tmp_path / "direct")
    for a, b in zip(predictions(fused), predictions(direct)):
        assert a["predicted"] == b["predicted"]
        assert a["proba"] == pytest.approx(b["proba"])


def test_replay_refuses_another_split_an_inner_split_and_other_data(toy_corpus, tmp_path, tfidf_run):
    params = {"run": str(tfidf_run)}
    with pytest.raises(EmoregError, match="no fold of .* trained on exactly this fold's training subjects"):
        evaluate(config(toy_corpus, "replay", params, split={"kind": "loso"}), tmp_path / "loso")
    with pytest.raises(EmoregError, match="without calibrate:"):
        evaluate(config(toy_corpus, "replay", params, calibrate={"method": "temperature"}), tmp_path / "cal")
    with pytest.raises(EmoregError, match="is not a run folder"):  # at config read: nothing written
        config(toy_corpus, "replay", {"run": str(tmp_path / "nowhere")})
    from dataclasses import replace

    from emoreg.corpora import load_corpus
    from emoreg.models import load_model, make_model
    from emoreg.prompts import PromptConfig
    from emoreg.runs import read_json

    corpus = load_corpus(str(toy_corpus), "deep-shame")
    held = set(read_json(tfidf_run / "folds.json")[0]["test_subjects"])
    model = make_model("replay", corpus.task, PromptConfig(), 0, params)
    model.fit([s for s in corpus.segments if s.subject_id not in held])
    test = [s for s in corpus.segments if s.subject_id in held]
    other = next(label for label in corpus.task.labels if label != test[0].label)
    with pytest.raises(EmoregError, match=f"segment {test[0].segment_id!r} is labelled {other!r} here"):
        model.predict_proba([replace(test[0], label=other)])
    model.save(tmp_path / "saved")  # a replay saves and loads like any model
    assert np.array_equal(load_model(tmp_path / "saved").predict_proba(test), model.predict_proba(test))
    with pytest.raises(EmoregError, match="params.run is required"):
        config(toy_corpus, "replay")
