"""Classification metrics, all computed from a confusion matrix (rows: gold, columns: predicted).

Conventions (the same as scikit-learn's defaults): precision of a class never predicted is 0;
macro-F1 averages the classes that occur in gold or predictions; unweighted average recall (UAR)
averages the recall of the classes that occur in gold; weighted-F1 weights by gold support.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

METRICS = ("accuracy", "macro_f1", "weighted_f1", "uar")


def confusion(gold: Sequence[int], pred: Sequence[int], n_labels: int) -> np.ndarray:
    cm = np.zeros((n_labels, n_labels), dtype=np.int64)
    np.add.at(cm, (np.asarray(gold, dtype=int), np.asarray(pred, dtype=int)), 1)
    return cm


def _prf(tp: np.ndarray, support: np.ndarray, predicted: np.ndarray):
    """Precision, recall and F1 per class (0 where undefined), element-wise."""
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return precision, recall, f1


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    cm = np.asarray(cm, dtype=float)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    precision, recall, f1 = _prf(np.diag(cm), support, predicted)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support, "predicted": predicted}


def scores(cm: np.ndarray) -> dict[str, float]:
    """accuracy, macro_f1, weighted_f1, uar of one confusion matrix (nan when it is empty)."""
    return {m: float(v[0]) for m, v in batched_scores(np.asarray(cm)[None]).items()}


def batched_scores(cms: np.ndarray) -> dict[str, np.ndarray]:
    """The metrics of a stack of confusion matrices (shape ``(B, k, k)``), vectorised."""
    cms = np.asarray(cms, dtype=float)
    tp = np.diagonal(cms, axis1=1, axis2=2)
    support, predicted = cms.sum(axis=2), cms.sum(axis=1)
    total = support.sum(axis=1)
    _, recall, f1 = _prf(tp, support, predicted)
    present = (support > 0) | (predicted > 0)  # classes in gold or predictions
    gold_present = support > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "accuracy": tp.sum(axis=1) / total,
            "macro_f1": (f1 * present).sum(axis=1) / present.sum(axis=1),
            "weighted_f1": (f1 * support).sum(axis=1) / total,
            "uar": (recall * gold_present).sum(axis=1) / gold_present.sum(axis=1),
        }


# ---------------------------------------------------------------- probabilities
PROBA_METRICS = ("ece", "brier", "log_loss")
ECE_BINS = 15
LOG_FLOOR = 1e-12  # log-loss of a gold label given probability 0 is capped at -log(1e-12) = 27.6


def calibration_parts(proba: np.ndarray, gold: np.ndarray, subject_of: np.ndarray, n_subjects: int,
                      n_bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Per-subject sums from which the probability metrics of any re-weighting of subjects follow
    (so subject-bootstrap CIs cost a matrix product, as for the confusion-matrix metrics).

    ECE uses ``n_bins`` equal-mass bins of the top-label confidence, their edges set once on all
    segments: ECE = sum over bins |sum(confidence - correct)| / N. Brier is the squared error of
    the whole probability vector against the one-hot gold label (0-2); log-loss the mean of
    -log p(gold)."""
    proba = np.asarray(proba, dtype=float)
    n = len(gold)
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == gold).astype(float)
    order = np.argsort(confidence, kind="stable")
    bin_of = np.empty(n, dtype=int)
    bin_of[order] = np.minimum(np.arange(n) * n_bins // max(n, 1), n_bins - 1)
    gap = np.zeros((n_subjects, n_bins))
    np.add.at(gap, (subject_of, bin_of), confidence - correct)
    onehot = np.eye(proba.shape[1])[gold]
    brier = ((proba - onehot) ** 2).sum(axis=1)
    nll = -np.log(np.maximum(proba[np.arange(n), gold], LOG_FLOOR))
    counts = np.bincount(subject_of, minlength=n_subjects).astype(float)
    return {"gap": gap, "brier": np.bincount(subject_of, brier, n_subjects),
            "log_loss": np.bincount(subject_of, nll, n_subjects), "count": counts,
            "bin_confidence": np.bincount(bin_of, confidence, n_bins) / np.maximum(np.bincount(bin_of, None, n_bins), 1),
            "bin_accuracy": np.bincount(bin_of, correct, n_bins) / np.maximum(np.bincount(bin_of, None, n_bins), 1),
            "bin_count": np.bincount(bin_of, None, n_bins)}


def batched_proba_scores(weights: np.ndarray, parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """ECE, Brier and log-loss for each row of subject ``weights`` (shape ``(B, n_subjects)``)."""
    weights = np.asarray(weights, dtype=float)
    total = weights @ parts["count"]
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"ece": np.abs(weights @ parts["gap"]).sum(axis=1) / total,
                "brier": weights @ parts["brier"] / total, "log_loss": weights @ parts["log_loss"] / total}
