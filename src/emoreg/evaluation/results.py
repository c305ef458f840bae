"""The metrics of a run's finished folds: pooled scores with subject-bootstrap CIs, fold means,
per class, per subject and calibration (``compute_metrics``), for a whole run or for the folds
finished so far (``fold_results``, ``load_partial_runs``: interim comparisons)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EmoregError
from ..runs import Run, RunFolder, check_predictions, finished_folds, fold_path, read_config, read_json, read_jsonl, split_of
from .metrics import METRICS, PROBA_METRICS, batched_proba_scores, calibration_parts, confusion, per_class, scores
from .stats import bootstrap_ci, resample_weights

N_BOOT = 2000  # subject-bootstrap resamples of every CI


def subject_confusions(run: Run, subjects: list[str]) -> np.ndarray:
    """One confusion matrix per subject of a run's predictions, in the order of ``subjects``: (n_subjects, k, k)."""
    gold, pred, subject_ids = run.arrays()
    k = len(run.labels)
    return np.stack([confusion(gold[subject_ids == s], pred[subject_ids == s], k) for s in subjects])


def fold_results(out: Path, folds: list[int], labels: list[str] | None, seed: int,
                 folds_in_split: int) -> tuple[list[dict], dict]:
    """The predictions of the finished ``folds`` of the run in ``out``, and their metrics.
    ``labels``: the task's label order (None: the order of the predictions' probabilities)."""
    rows = []
    for k in folds:
        part = read_jsonl(fold_path(out, k))
        if labels is not None:
            check_predictions(fold_path(out, k), part, labels, "delete it and that fold runs again")
        rows += part
    metrics = compute_metrics(rows, labels or list(rows[0]["proba"]), seed=seed)
    metrics["folds_run"] = list(folds)
    metrics["folds_in_split"] = folds_in_split
    return rows, metrics


def compute_metrics(rows: list[dict[str, Any]], labels: list[str], seed: int = 0) -> dict[str, Any]:
    """Pooled metrics with subject-bootstrap CIs, fold means, per class, per subject."""
    index = {label: i for i, label in enumerate(labels)}
    k = len(labels)
    gold = np.array([index[r["gold"]] for r in rows])
    pred = np.array([index[r["predicted"]] for r in rows])
    subjects = np.array([r["subject_id"] for r in rows])
    fold_ids = np.array([r["fold"] for r in rows])
    pooled_cm = confusion(gold, pred, k)
    subject_names = sorted(set(subjects.tolist()))
    subject_cms = np.stack([confusion(gold[subjects == s], pred[subjects == s], k) for s in subject_names])
    pooled = scores(pooled_cm)
    ci = bootstrap_ci(subject_cms, n_boot=N_BOOT, seed=seed)
    fold_scores = [scores(confusion(gold[fold_ids == f], pred[fold_ids == f], k)) for f in sorted(set(fold_ids.tolist()))]
    pc = per_class(pooled_cm)
    return {
        "labels": labels,
        "n_segments": len(rows),
        "n_subjects": len(subject_names),
        "n_folds": len(fold_scores),
        "pooled": {m: {"value": pooled[m], "ci95": list(ci[m])} for m in METRICS},
        "fold_mean": {m: {"mean": float(np.nanmean([f[m] for f in fold_scores])),
                          "std": float(np.nanstd([f[m] for f in fold_scores]))} for m in METRICS},
        "per_class": {label: {key: float(pc[key][i]) for key in ("precision", "recall", "f1", "support")}
                      for i, label in enumerate(labels)},
        "confusion": pooled_cm.tolist(),
        "per_subject": {s: {"n": int(cm.sum()), **scores(cm)} for s, cm in zip(subject_names, subject_cms)},
        "calibration": calibration(rows, labels, gold, subjects, subject_names, seed),
        "bootstrap": {"unit": "subject", "resamples": N_BOOT, "seed": seed, "interval": "percentile"},
    }


def calibration(rows, labels, gold, subjects, subject_names, seed) -> dict[str, Any]:
    """ECE (15 equal-mass bins), Brier and log-loss of the predicted probabilities, with the
    same subject-bootstrap CIs as the other metrics, and the reliability diagram's bins."""
    proba = np.array([[r["proba"][label] for label in labels] for r in rows])
    where = {s: i for i, s in enumerate(subject_names)}
    parts = calibration_parts(proba, gold, np.array([where[s] for s in subjects.tolist()]), len(subject_names))
    value = batched_proba_scores(np.ones((1, len(subject_names))), parts)
    boot = batched_proba_scores(resample_weights(len(subject_names), N_BOOT, seed), parts)
    out: dict[str, Any] = {m: {"value": float(value[m][0]), "ci95": [float(np.nanquantile(boot[m], 0.025)),
                                                                      float(np.nanquantile(boot[m], 0.975))]}
                           for m in PROBA_METRICS}
    out["reliability"] = {"confidence": parts["bin_confidence"].tolist(), "accuracy": parts["bin_accuracy"].tolist(),
                          "count": parts["bin_count"].astype(int).tolist(), "bins": "equal-mass"}
    return out


def load_partial_runs(paths: list[str | Path]) -> list[Run]:
    """Runs still in progress (or finished), restricted to the folds that every one of them has
    finished, with their metrics computed on those folds: an interim comparison. The runs must
    share their split (the test subjects of every fold)."""
    paths = [Path(p) for p in paths]
    for path in paths:
        folder = RunFolder(path)
        missing = [f.name for f in (folder.config_file, folder.data_file, folder.folds_file) if not f.is_file()]
        if missing:
            raise EmoregError(f"{path} is not a run folder (missing {', '.join(missing)}); "
                              "start it with `emoreg evaluate CONFIG --out RUN`")
    splits = [split_of(p) for p in paths]
    for path, split in zip(paths[1:], splits[1:]):
        if split != splits[0]:
            raise EmoregError(f"{path} and {paths[0]} use different splits; an interim comparison needs the "
                              "same folds (the same corpus, split kind, fold count and seed)")
    common = sorted(set.intersection(*(set(finished_folds(p)) for p in paths)))
    if not common:
        raise EmoregError("no fold is finished in every one of " + ", ".join(map(str, paths))
                          + "; finished: " + "; ".join(f"{p}: {finished_folds(p) or 'none'}" for p in paths))
    runs = []
    for path in paths:
        config = read_config(path)
        rows, metrics = fold_results(path, common, None, config.get("seed", 0), len(splits[0]))
        metrics["interim"] = True
        runs.append(Run(path=path, config=config, labels=metrics["labels"], predictions=rows, metrics=metrics,
                        data=read_json(RunFolder(path).data_file)))
    return runs
