"""--track mlflow: a parent run per evaluation, a child per fold, continued when the run resumes."""

import json

import numpy as np
import pytest

from emoreg.cli import main
from emoreg.models import MODELS
from emoreg.models.tfidf import TfidfLogReg


class LossyTfidf(TfidfLogReg):
    """TF-IDF that reports a training-loss curve, as the LLM does."""

    name = "lossy-tfidf"

    def describe(self):
        return {"loss": [{"step": i + 1, "loss": 1.0 / (i + 1)} for i in range(5)]}


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setitem(MODELS, "lossy-tfidf", LossyTfidf)
    return uri


def test_evaluate_logs_a_parent_and_one_child_per_fold_and_resumes_them(toy_corpus, tmp_path, store, capsys):
    import mlflow
    import yaml

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"corpus": str(toy_corpus), "task": "deep-shame", "model": "lossy-tfidf",
                                      "params": {"min_df": 1}, "split": {"kind": "group-kfold", "folds": 3}}))
    run = tmp_path / "run"
    assert main(["evaluate", str(config), "--out", str(run), "--fold", "0", "--track", "mlflow"]) == 0
    first = json.loads((run / "tracking.json").read_text())
    assert list(first["folds"]) == ["0"] and not first.get("finished")
    assert main(["evaluate", str(config), "--out", str(run), "--track", "mlflow"]) == 0  # resumes: folds 1, 2
    state = json.loads((run / "tracking.json").read_text())
    assert state["parent"] == first["parent"] and state["folds"]["0"] == first["folds"]["0"]
    assert sorted(state["folds"]) == ["0", "1", "2"] and state["finished"]
    client = mlflow.MlflowClient(tracking_uri=store)
    parent = client.get_run(state["parent"])
    metrics = json.loads((run / "metrics.json").read_text())
    assert parent.data.metrics["macro_f1"] == pytest.approx(metrics["pooled"]["macro_f1"]["value"])
    assert "ece" in parent.data.metrics and parent.data.params["model"] == "lossy-tfidf"
    assert parent.data.params["split.folds"] == "3" and parent.data.params["params.min_df"] == "1"
    runs = client.search_runs([parent.info.experiment_id])
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == state["parent"]]
    assert sorted(r.info.run_name for r in children) == ["fold-00", "fold-01", "fold-02"]  # each logged once
    history = client.get_metric_history(state["folds"]["1"], "train_loss")
    assert [h.step for h in history] == [1, 2, 3, 4, 5] and np.isclose(history[-1].value, 0.2)
    artifacts = {a.path for a in client.list_artifacts(state["parent"])}
    assert {"config.yaml", "metrics.json", "predictions.jsonl", "report"} <= artifacts
    assert "report/report.md" in {a.path for a in client.list_artifacts(state["parent"], "report")}


def test_ablate_logs_one_parent_run_per_cell(toy_corpus, tmp_path, store):
    import mlflow

    grid = tmp_path / "grid.yaml"
    grid.write_text(f"corpus: {toy_corpus}\ntask: deep-shame\nsplit: {{kind: group-kfold, folds: 3}}\n"
                    "prompt: {sources: [utterance, nonverbal]}\nmodel: tfidf\nparams: {text: prompt, min_df: 1}\n")
    assert main(["ablate", str(grid), "--out", str(tmp_path / "g"), "--track", "mlflow"]) == 0
    cells = sorted(p for p in (tmp_path / "g" / "runs").iterdir() if (p / "metrics.json").is_file())
    client = mlflow.MlflowClient(tracking_uri=store)
    parents = {json.loads((c / "tracking.json").read_text())["parent"] for c in cells}
    assert len(parents) == len(cells) >= 3
    for run_id in parents:
        assert client.get_run(run_id).data.metrics["macro_f1"] >= 0


def test_the_default_local_store_is_one_mlflows_own_client_and_command_read_back(toy_corpus, tmp_path, monkeypatch):
    """Without $MLFLOW_TRACKING_URI: ./mlflow.db (SQLite) and artifacts in ./mlruns, which MLflow's
    Python client and its `mlflow runs list` command read back with no special switch (MLflow's
    plain file store refuses to, in current MLflow)."""
    import subprocess
    import sys

    import mlflow
    import yaml

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"corpus": str(toy_corpus), "task": "deep-shame", "model": "tfidf",
                                      "params": {"min_df": 1}, "split": {"kind": "group-kfold", "folds": 2}}))
    assert main(["evaluate", str(config), "--out", "run", "--track", "mlflow"]) == 0
    assert (tmp_path / "mlflow.db").is_file() and (tmp_path / "mlruns").is_dir()
    state = json.loads((tmp_path / "run" / "tracking.json").read_text())
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("emoreg")
    assert client.get_run(state["parent"]).data.params["model"] == "tfidf"
    assert "metrics.json" in {a.path for a in client.list_artifacts(state["parent"])}
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("MLFLOW_")}
    listed = subprocess.run([sys.executable, "-m", "mlflow", "runs", "list", "--experiment-id", experiment.experiment_id,
                             "--view", "all"], capture_output=True, text=True, cwd=tmp_path,
                            env=env | {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    assert listed.returncode == 0 and state["parent"] in listed.stdout, listed.stderr[-2000:]


@pytest.mark.parametrize("uri, reason", [("foo://nowhere", "cannot be used"), ("http://127.0.0.1:9", "cannot be used")])
def test_a_store_that_cannot_be_used_fails_before_the_run_starts(toy_corpus, tmp_path, monkeypatch, capsys, uri, reason):
    import yaml

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"corpus": str(toy_corpus), "task": "deep-shame", "model": "tfidf",
                                      "params": {"min_df": 1}, "split": {"kind": "group-kfold", "folds": 2}}))
    assert main(["evaluate", str(config), "--out", str(tmp_path / "run"), "--track", "mlflow"]) == 2
    err = capsys.readouterr().err
    assert f"--track mlflow: the tracking store {uri} {reason}" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_a_tracking_failure_never_fails_a_finished_run_and_a_stale_tracking_file_is_named(
        toy_corpus, tmp_path, store, monkeypatch, capsys):
    import yaml

    from emoreg import tracking

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"corpus": str(toy_corpus), "task": "deep-shame", "model": "tfidf",
                                      "params": {"min_df": 1}, "split": {"kind": "group-kfold", "folds": 2}}))
    run = tmp_path / "run"

    def broken(run):
        raise ConnectionError("the server went away")

    monkeypatch.setattr(tracking, "log_run", broken)
    assert main(["evaluate", str(config), "--out", str(run), "--track", "mlflow"]) == 0
    assert "mlflow: logging" in capsys.readouterr().err and (run / "metrics.json").is_file()
    monkeypatch.undo()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    (run / "tracking.json").write_text(json.dumps({"parent": "0123456789abcdef0123456789abcdef", "folds": {}}))
    assert main(["evaluate", str(config), "--out", str(run), "--track", "mlflow"]) == 2
    assert "names MLflow run 0123456789abcdef0123456789abcdef, which the store" in capsys.readouterr().err
