"""Experiment tracking with MLflow (``emoreg evaluate ... --track mlflow``; the ``mlflow`` extra).

One parent run per evaluation (or ablation cell), one child run per finished fold:

* parent: the resolved config as parameters (nested keys flattened: ``params.lr``,
  ``prompt.max_tokens``), the pooled metrics with their CIs and the calibration metrics, and as
  artifacts ``config.yaml``, ``metrics.json``, ``predictions.jsonl`` and the run's report
  (``report.md`` and its figures);
* child ``fold-NN``: that fold's metrics, fit and predict seconds, the training loss as a metric
  history (one value per step), the fold's metadata as an artifact.

Where: ``$MLFLOW_TRACKING_URI`` when set, else a local SQLite store ``./mlflow.db`` with the
artifacts in ``./mlruns`` (MLflow's own client reads it back, and ``mlflow ui --backend-store-uri
sqlite:///mlflow.db`` shows it; MLflow's plain file store is in maintenance mode and refuses to
read back without a switch). The MLflow run ids are kept in the run folder (``tracking.json``),
so a resumed or extended run continues the same MLflow runs and logs each fold once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import EmoregError
from .runs import RunFolder, finished_folds, fold_path, read_config, read_json, read_jsonl, write_json

EXPERIMENT = "emoreg"


def _mlflow():
    try:
        import mlflow
    except ImportError:
        raise EmoregError("--track mlflow needs MLflow: pip install 'emoreg[mlflow]' (or mlflow-skinny)") from None
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        try:
            import sqlalchemy  # noqa: F401 - the SQLite store's, which mlflow-skinny leaves out
        except ImportError:
            raise EmoregError("--track mlflow keeps its runs in a local SQLite store (./mlflow.db), which needs "
                              "SQLAlchemy: pip install 'emoreg[mlflow]'; or point MLFLOW_TRACKING_URI at a "
                              "tracking server") from None
        mlflow.set_tracking_uri(default_store())
    else:  # read now: an earlier call in this process may have pointed MLflow elsewhere
        mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    return mlflow


def check_store(run: str | Path | None = None) -> str:
    """Before a run starts: the tracking store answers (any scheme MLflow knows: sqlite, http(s), a
    file store where MLflow allows it), and a run folder's ``tracking.json`` names runs it holds.
    Every problem is an EmoregError saying what to change; returns the store's URI."""
    mlflow = _mlflow()
    uri = mlflow.get_tracking_uri()
    # a server that does not answer should fail in seconds, not after MLflow's minutes of retries
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    try:
        client = mlflow.MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 - any failure of the store is the user's to fix, said plainly
        reason = " ".join(str(exc).split())[:300]
        raise EmoregError(f"--track mlflow: the tracking store {uri} cannot be used ({type(exc).__name__}: {reason}); "
                          "set MLFLOW_TRACKING_URI to a server that answers or to sqlite:///mlflow.db, or leave it "
                          "unset for the local store, or drop --track") from None
    state_file = RunFolder(run).tracking_file if run is not None else None
    if state_file is not None and state_file.is_file():
        state = read_json(state_file)
        parent = state.get("parent") if isinstance(state, dict) else None
        if parent:
            try:
                client.get_run(parent)
            except Exception:  # noqa: BLE001 - MLflow raises its own error for an unknown run id
                raise EmoregError(f"--track mlflow: {state_file} names MLflow run {parent}, which the store {uri} does "
                                  "not hold (another store?); point MLFLOW_TRACKING_URI at the store that has it, or "
                                  f"delete {state_file} to log the run anew") from None
    return uri


def default_store() -> str:
    """The local store when ``$MLFLOW_TRACKING_URI`` is not set: SQLite in ./mlflow.db."""
    return "sqlite:///" + str(Path("mlflow.db").resolve())


def _experiment(mlflow) -> None:
    """The ``emoreg`` experiment, its artifacts in ./mlruns for the local store (a server keeps its own)."""
    if mlflow.get_experiment_by_name(EXPERIMENT) is None and not os.environ.get("MLFLOW_TRACKING_URI"):
        mlflow.create_experiment(EXPERIMENT, artifact_location=Path("mlruns").resolve().as_uri())
    mlflow.set_experiment(EXPERIMENT)


def flatten(data: Any, prefix: str = "") -> dict[str, str]:
    """Nested config keys as MLflow parameters: ``{"params": {"lr": 1e-3}}`` -> ``{"params.lr": "0.001"}``."""
    if isinstance(data, dict):
        out: dict[str, str] = {}
        for key, value in data.items():
            out |= flatten(value, f"{prefix}{key}.")
        return out
    text = json.dumps(data) if isinstance(data, (list, tuple)) else str(data)
    return {prefix[:-1]: text[:6000]}  # MLflow's limit on a parameter value


def _metrics(prefix: str, block: dict[str, Any]) -> dict[str, float]:
    out = {}
    for name, value in block.items():
        if isinstance(value, dict) and "value" in value:
            out[f"{prefix}{name}"] = float(value["value"])
            if "ci95" in value:
                out[f"{prefix}{name}_ci_low"], out[f"{prefix}{name}_ci_high"] = map(float, value["ci95"])
    return out


def log_run(run: str | Path) -> dict[str, Any]:
    """Log a run folder to MLflow (finished folds only; the parent's metrics once all are done).
    Returns the MLflow ids, also kept in ``run/tracking.json``."""
    from .evaluation.results import compute_metrics

    mlflow = _mlflow()
    run = Path(run)
    config = read_config(run)
    state_file = RunFolder(run).tracking_file
    state = read_json(state_file) if state_file.is_file() else {"parent": None, "folds": {}}
    _experiment(mlflow)
    labels = None
    with mlflow.start_run(run_id=state["parent"], run_name=config.get("name") or run.name) as parent:
        state["parent"] = parent.info.run_id
        if not state.get("params_logged"):
            mlflow.log_params(flatten({k: v for k, v in config.items() if v is not None}))
            mlflow.set_tags({"emoreg.run_folder": str(run.resolve()), "emoreg.model": config.get("model")})
            state["params_logged"] = True
        for fold in finished_folds(run):
            if str(fold) in state["folds"]:
                continue  # logged by an earlier call
            rows = read_jsonl(fold_path(run, fold))
            labels = labels or list(rows[0]["proba"])  # the task's label order, as every row keeps it
            meta = read_json(fold_path(run, fold, ".meta.json"))
            with mlflow.start_run(run_name=f"fold-{fold:02d}", nested=True) as child:
                metrics = compute_metrics(rows, list(labels), config.get("seed", 0))
                mlflow.log_metrics(_metrics("", metrics["pooled"]) | {
                    "fit_seconds": float(meta.get("fit_seconds", 0)), "predict_seconds": float(meta.get("predict_seconds", 0)),
                    "n_test": float(meta.get("n_test", len(rows)))})
                for point in meta.get("model", {}).get("loss") or []:
                    mlflow.log_metric("train_loss", float(point["loss"]), step=int(point["step"]))
                mlflow.log_artifact(str(fold_path(run, fold, ".meta.json")))
                state["folds"][str(fold)] = child.info.run_id
            write_json(state_file, state)
        if RunFolder(run).metrics_file.is_file() and not state.get("finished"):
            from .reporting import write_report

            metrics = read_json(RunFolder(run).metrics_file)
            mlflow.log_metrics(_metrics("", metrics["pooled"]) | _metrics("", metrics.get("calibration", {})))
            report = write_report([run], run / "report")
            folder = RunFolder(run)
            for file in (folder.config_file, folder.metrics_file, folder.predictions_file):
                mlflow.log_artifact(str(file))
            mlflow.log_artifacts(str(report.parent), artifact_path="report")
            state["finished"] = True
    write_json(state_file, state)
    return state
