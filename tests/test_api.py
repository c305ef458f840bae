"""The Python API and its walk-through, end to end."""

import subprocess
import sys
from pathlib import Path

import emoreg

ROOT = Path(__file__).resolve().parents[1]


def test_the_public_api_is_exactly_what_all_lists():
    assert sorted(emoreg.__all__) == ["EmoregError", "EvaluationRun", "Segment", "evaluate", "load_corpus",
                                      "load_model", "load_task", "make_model", "report"]
    import importlib

    for module in ("evaluation", "models", "reporting", "tracking", "cli", "serve.app"):
        importlib.import_module(f"emoreg.{module}")  # importing every submodule must not shadow an API name

    assert all(callable(getattr(emoreg, name)) for name in emoreg.__all__)
    assert emoreg.report.__module__ == "emoreg.api" and emoreg.evaluate.__module__ == "emoreg.api"


def test_evaluate_from_a_mapping_gives_the_cli_run_folder_and_a_frame(tmp_path):
    run = emoreg.evaluate({"corpus": "deep-example", "model": "tfidf", "params": {"min_df": 1},
                           "split": {"kind": "loso"}}, tmp_path / "run", overrides=["params.C=0.5"])
    assert run.config["params"] == {"min_df": 1, "C": 0.5} and (run.path / "metrics.json").is_file()
    frame = run.predictions_frame()
    labels = emoreg.load_task("deep-shame").labels
    assert len(frame) == run.metrics["n_segments"] and {f"p_{label}" for label in labels} <= set(frame.columns)
    again = emoreg.evaluate({"corpus": "deep-example", "model": "tfidf", "params": {"min_df": 1},
                             "split": {"kind": "loso"}}, tmp_path / "run", overrides=["params.C=0.5"])
    assert again.predictions == run.predictions  # a finished run is read back, not redone


def test_the_walk_through_runs_end_to_end(tmp_path, annomi_data_dir):
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "python_api.py"), str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "report: " in done.stdout and (tmp_path / "out" / "report" / "report.md").is_file()
    assert "AnnoMI fold 0: TF-IDF macro-F1 0.48" in done.stdout


def test_models_take_dicts_and_dataframes_built_in_memory_with_the_files_checks():
    """A notebook's segments: dicts of the segment file's fields or a DataFrame of them, validated
    with the file's messages, each problem named by its position."""
    import pandas as pd
    import pytest

    corpus = emoreg.load_corpus("deep-example")
    model = emoreg.make_model("tfidf", corpus.task, text="utterance").fit(corpus.segments)
    records = [s.to_dict() for s in corpus.segments[:4]]
    expected = model.predict_proba(corpus.segments[:4])
    assert (model.predict_proba(records) == expected).all()
    assert (model.predict_proba(pd.DataFrame(records)) == expected).all()
    new = {"segment_id": "n1", "subject_id": "p1", "session_id": "p1-a", "start_s": 0.0, "end_s": 2.0,
           "transcript": [{"speaker": "Candidate", "text": "That was entirely my fault."}]}
    assert model.predict([new])[0] in corpus.task.labels  # no label needed to predict
    with pytest.raises(emoreg.EmoregError, match=r"predict_proba\(segments\)\[1\]: transcript"):
        model.predict_proba([new, new | {"transcript": "not a list"}])
    with pytest.raises(emoreg.EmoregError, match="wrap a single segment in a list"):
        model.predict_proba(new)
    with pytest.raises(emoreg.EmoregError, match=r"fit\(segments\)\[0\]: label: 'Sadness' is not a label"):
        emoreg.make_model("tfidf", corpus.task, text="utterance").fit([records[0] | {"label": "Sadness"}] + records[1:])
    segment = emoreg.Segment(segment_id="n2", subject_id="p1", session_id="p1-a", start_s=0.0, end_s=1.0)
    assert model.predict_proba([segment]).shape == (1, len(corpus.task.labels))
