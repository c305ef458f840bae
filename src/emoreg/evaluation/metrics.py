"""Classification metrics, all computed from a confusion matrix (rows: gold, columns: predicted).

Conventions (the same as scikit-learn's defaults): precision of a class never predicted is 0;
macro-F1 averages the classes that occur in gold or predictions; unweighted average recall (UAR)
averages the recall of the classes that occur in gold; weighted-F1 weights by gold support.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

METRICS = ("accuracy", "macro_f1", "weighted_f1", "uar")


def confusion(gold: Sequence[int], pred: Sequence[int], n_labels: int) -> np.ndarray:
    cm = np.zeros((n_labels, n_labels), dtype=np.int64)
    np.add.at(cm, (np.asarray(gold, dtype=int), np.asarray(pred, dtype=int)), 1)
    return cm


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    cm = np.asarray(cm, dtype=float)
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support, "predicted": predicted}


def scores(cm: np.ndarray) -> dict[str, float]:
    """accuracy, macro_f1, weighted_f1, uar of one confusion matrix (nan when it is empty)."""
    cm = np.asarray(cm, dtype=float)
    total = cm.sum()
    if total == 0:
        return {m: float("nan") for m in METRICS}
    pc = per_class(cm)
    present = (pc["support"] > 0) | (pc["predicted"] > 0)
    gold_present = pc["support"] > 0
    return {
        "accuracy": float(np.trace(cm) / total),
        "macro_f1": float(pc["f1"][present].mean()),
        "weighted_f1": float((pc["f1"] * pc["support"]).sum() / pc["support"].sum()),
        "uar": float(pc["recall"][gold_present].mean()),
    }


def batched_scores(cms: np.ndarray) -> dict[str, np.ndarray]:
    """``scores`` for a stack of confusion matrices (shape ``(B, k, k)``), vectorised."""
    cms = np.asarray(cms, dtype=float)
    tp = np.diagonal(cms, axis1=1, axis2=2)
    support = cms.sum(axis=2)
    predicted = cms.sum(axis=1)
    total = support.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        present = (support > 0) | (predicted > 0)
        gold_present = support > 0
        return {
            "accuracy": tp.sum(axis=1) / total,
            "macro_f1": (f1 * present).sum(axis=1) / present.sum(axis=1),
            "weighted_f1": (f1 * support).sum(axis=1) / total,
            "uar": (recall * gold_present).sum(axis=1) / gold_present.sum(axis=1),
        }
