"""The Python API and its walk-through, end to end."""

import subprocess
import sys
from pathlib import Path

import emoreg

ROOT = Path(__file__).resolve().parents[1]


def test_the_public_api_is_exactly_what_all_lists():
    assert sorted(emoreg.__all__) == ["EvaluationRun", "evaluate", "load_corpus", "load_model", "load_task",
                                      "make_model", "report"]
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
