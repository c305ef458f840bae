"""Which source drove each prediction: occlusion per source, same model, no retraining."""

import json
import shutil

import numpy as np

from emoreg.cli import main
from emoreg.explain import REMOVED, occlusion, summarise, without
from emoreg.models import make_model
from emoreg.prompts import PromptConfig
from emoreg.tasks import DEEP_SHAME


def test_a_source_the_model_cannot_see_changes_nothing(toy_split):
    train, test = toy_split
    model = make_model("tfidf", DEEP_SHAME, PromptConfig(), 0, {"text": "utterance", "min_df": 1}).fit(train)
    explained = occlusion(model, test[:10])
    assert all("utterance" in e for e in explained)
    for e in explained:
        for source, delta in e.items():
            if source != "utterance":  # this model reads the utterance only
                assert all(v == 0 for v in delta.values()), (source, delta)
    assert any(any(abs(v) > 0.01 for v in e["utterance"].values()) for e in explained)


def test_each_change_is_the_full_probability_minus_the_occluded_one(toy_split):
    train, test = toy_split
    model = make_model("tfidf", DEEP_SHAME, PromptConfig(), 0, {"text": "prompt", "min_df": 1}).fit(train)
    segment = next(s for s in test if s.nonverbal is not None and len(s.transcript or ()) > 1)
    explained = occlusion(model, [segment])[0]
    assert set(explained) >= {"history", "utterance", "nonverbal"}
    full = model.predict_proba([segment])[0]
    for source in explained:
        expected = full - model.predict_proba([without(segment, source)])[0]
        assert np.allclose([explained[source][label] for label in DEEP_SHAME.labels], expected, atol=1e-6)
    assert without(segment, "utterance").transcript[-1].text == REMOVED
    assert len(without(segment, "history").transcript) == 1


def test_summary_shares_are_per_class_and_between_zero_and_one():
    rows = [{"predicted": "a", "proba": {"a": 0.8, "b": 0.2}, "explain": {"utterance": {"a": 0.4, "b": -0.4},
                                                                          "context": {"a": -0.1, "b": 0.1}}},
            {"predicted": "a", "proba": {"a": 0.5, "b": 0.5}, "explain": {"utterance": {"a": 0.5, "b": -0.5},
                                                                          "context": {"a": 0.0, "b": 0.0}}}]
    summary = summarise(rows)
    assert summary == {"a": {"utterance": 0.75, "context": 0.0}}  # (0.5 + 1.0) / 2; a push away counts 0


def test_predict_explain_writes_rows_a_summary_and_a_figure(tmp_path, capsys):
    assert main(["train", "configs/baselines/deep-example-tfidf.yaml", "--out", str(tmp_path / "m")]) == 0
    assert main(["predict", str(tmp_path / "m"), "--corpus", "deep-example", "--out", str(tmp_path / "p.jsonl"),
                 "--explain"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert all(set(r["explain"]) <= {"context", "person", "history", "utterance", "nonverbal", "introspection"}
               and r["explain"] for r in rows)
    out = capsys.readouterr().out
    assert "share of p(" in out and (tmp_path / "p.explain.png").read_bytes()[:4] == b"\x89PNG"


def test_predict_held_out_takes_the_test_subjects_of_a_saved_fold_model(tmp_path, toy_corpus, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(f"corpus: {toy_corpus}\ntask: deep-shame\nmodel: tfidf\nsplit: {{kind: group-kfold, folds: 3}}\n"
                      "save_models: true\n")
    assert main(["evaluate", str(config), "--out", str(tmp_path / "run")]) == 0
    held = set(json.loads((tmp_path / "run" / "folds.json").read_text())[1]["test_subjects"])
    model = tmp_path / "run" / "folds" / "fold-01-model"
    assert main(["predict", str(model), "--corpus", str(toy_corpus), "--out", str(tmp_path / "p.jsonl"),
                 "--held-out", "--explain"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert {r["subject_id"] for r in rows} == held and all(r["explain"] for r in rows)
    evaluated = [json.loads(line) for line in (tmp_path / "run" / "folds" / "fold-01.jsonl").read_text().splitlines()]
    assert [r["proba"] for r in rows] == [r["proba"] for r in evaluated]  # the fold's own predictions
    shutil.copytree(model, tmp_path / "copied-model")  # the same model, no longer inside its run
    assert main(["predict", str(tmp_path / "copied-model"), "--corpus", str(toy_corpus), "--out",
                 str(tmp_path / "q.jsonl"), "--held-out"]) == 2
    assert "--held-out needs a fold model saved by an evaluation" in capsys.readouterr().err


def test_the_service_explains_when_asked(tmp_path):
    from fastapi.testclient import TestClient

    from emoreg.models import load_model
    from emoreg.serve.app import create_app

    assert main(["train", "configs/baselines/deep-example-tfidf.yaml", "--out", str(tmp_path / "m")]) == 0
    turns = [{"speaker": "Interviewer", "text": "Your test result was below the average."},
             {"speaker": "Interviewee", "text": "Ha, I was saving my energy for the real work!"}]
    with TestClient(create_app(load_model(tmp_path / "m"), tmp_path / "s.sqlite")) as c:
        sid = c.post("/sessions", json={"context": "A job interview."}).json()["session_id"]
        plain = c.post(f"/sessions/{sid}/segments", json={"turns": turns[:1]}).json()
        assert "explain" not in plain
        answer = c.post(f"/sessions/{sid}/segments?explain=true", json={"turns": turns[1:]}).json()
        assert set(answer["explain"]) == {"context", "history", "utterance"}
        assert set(answer["explain"]["utterance"]) == set(answer["proba"])
        batch = c.post("/classify?explain=true", json={"segments": [{"segment_id": "a", "subject_id": "s",
                                                                     "session_id": "s", "transcript": turns}]})
        assert "history" in batch.json()["predictions"][0]["explain"]


def test_the_service_stores_the_top_source_of_each_post_when_run_with_explain(tmp_path):
    import sqlite3

    from fastapi.testclient import TestClient

    from emoreg.models import load_model
    from emoreg.serve.app import create_app

    assert main(["train", "configs/baselines/deep-example-tfidf.yaml", "--out", str(tmp_path / "m")]) == 0
    old = sqlite3.connect(tmp_path / "old.sqlite")  # a database of the schema before top_source
    old.executescript("CREATE TABLE sessions (id TEXT PRIMARY KEY, created REAL NOT NULL, closed REAL, context TEXT, "
                      "person TEXT); CREATE TABLE segments (session_id TEXT NOT NULL, seq INTEGER NOT NULL, "
                      "received REAL NOT NULL, start_s REAL, end_s REAL, turns TEXT NOT NULL, events TEXT NOT NULL, "
                      "features TEXT NOT NULL, introspection TEXT, label TEXT NOT NULL, proba TEXT NOT NULL, "
                      "PRIMARY KEY (session_id, seq));")
    old.close()
    turns = [{"speaker": "Interviewer", "text": "Your test result was below the average."},
             {"speaker": "Interviewee", "text": "Sorry, that was stupid of me, it is my fault."}]
    with TestClient(create_app(load_model(tmp_path / "m"), tmp_path / "old.sqlite", explain_live=True)) as c:
        sid = c.post("/sessions", json={"context": "A job interview."}).json()["session_id"]
        for turn in turns:
            answer = c.post(f"/sessions/{sid}/segments", json={"turns": [turn]}).json()
            assert "explain" not in answer  # stored, not sent, unless asked
        timeline = c.get(f"/sessions/{sid}/timeline").json()["segments"]
    tops = [t["top_source"] for t in timeline]
    assert tops[-1] is not None and tops[-1].split()[0] in {"context", "history", "utterance"}
    assert tops[-1].split()[1].startswith("+")  # it raised the predicted label's probability
