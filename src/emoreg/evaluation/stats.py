"""Statistics with the subject as the unit: bootstrap CIs over subjects, paired permutation
tests that swap two systems' predictions subject by subject, McNemar's test, Holm's correction.

Everything works on per-subject confusion matrices (shape ``(n_subjects, k, k)``), so a
resample only re-weights matrices and any metric of ``metrics.batched_scores`` comes for free.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest

from .metrics import METRICS, batched_scores, scores


def resample_weights(n_subjects: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_subjects): how often each subject is drawn in each bootstrap resample."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_subjects, np.full(n_subjects, 1.0 / n_subjects), size=n_boot)


def _pooled(weights: np.ndarray, subject_cms: np.ndarray) -> np.ndarray:
    return np.einsum("bs,sij->bij", weights, subject_cms)


def bootstrap_ci(subject_cms: np.ndarray, n_boot: int = 2000, seed: int = 0,
                 level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile CIs of every metric: resample subjects with replacement, pool their segments."""
    subject_cms = np.asarray(subject_cms, dtype=float)
    values = batched_scores(_pooled(resample_weights(subject_cms.shape[0], n_boot, seed), subject_cms))
    alpha = (1 - level) / 2
    return {m: (float(np.nanquantile(values[m], alpha)), float(np.nanquantile(values[m], 1 - alpha)))
            for m in METRICS}


def paired_permutation(cms_a: np.ndarray, cms_b: np.ndarray, n_perm: int = 10000,
                       seed: int = 0) -> dict[str, dict[str, float]]:
    """Two-sided test of "A and B are exchangeable" per metric.

    Under the null, swapping A's and B's predictions for any subject changes nothing; each
    permutation swaps a random half of the subjects and recomputes the pooled metrics. The
    p-value counts permutations with a difference at least as large as observed (plus the
    observed one itself, so it is never 0).
    """
    cms_a = np.asarray(cms_a, dtype=float)
    cms_b = np.asarray(cms_b, dtype=float)
    observed_a, observed_b = scores(cms_a.sum(axis=0)), scores(cms_b.sum(axis=0))
    rng = np.random.default_rng(seed)
    swap = (rng.random((n_perm, cms_a.shape[0])) < 0.5).astype(float)
    # swapping subject s moves (A_s - B_s) from A's pooled matrix to B's
    moved = np.einsum("ps,sij->pij", swap, cms_a - cms_b)
    pooled_a = cms_a.sum(axis=0)[None] - moved
    pooled_b = cms_b.sum(axis=0)[None] + moved
    perm_a, perm_b = batched_scores(pooled_a), batched_scores(pooled_b)
    out = {}
    for m in METRICS:
        d_obs = observed_a[m] - observed_b[m]
        d_perm = perm_a[m] - perm_b[m]
        extreme = np.sum(np.abs(d_perm) >= abs(d_obs) - 1e-12)
        out[m] = {"difference": float(d_obs), "p": float((extreme + 1) / (n_perm + 1))}
    return out


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, float]:
    """Exact McNemar test on paired segment-level correctness (binomial on the discordant pairs)."""
    correct_a = np.asarray(correct_a, dtype=bool)
    correct_b = np.asarray(correct_b, dtype=bool)
    b = int(np.sum(correct_a & ~correct_b))
    c = int(np.sum(~correct_a & correct_b))
    p = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)
    return {"a_only": b, "b_only": c, "p": p}


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order."""
    m = len(pvalues)
    order = np.argsort(pvalues)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted.tolist()


def bootstrap_difference(cms_a: np.ndarray, cms_b: np.ndarray, metric: str, n_boot: int = 2000, seed: int = 0,
                         level: float = 0.95) -> tuple[float, float, float]:
    """``metric(A) - metric(B)`` and its paired percentile CI: both runs resampled with the same subjects."""
    cms_a = np.asarray(cms_a, dtype=float)
    cms_b = np.asarray(cms_b, dtype=float)
    weights = resample_weights(cms_a.shape[0], n_boot, seed)
    diff = batched_scores(_pooled(weights, cms_a))[metric] - batched_scores(_pooled(weights, cms_b))[metric]
    alpha = (1 - level) / 2
    observed = scores(cms_a.sum(axis=0))[metric] - scores(cms_b.sum(axis=0))[metric]
    return float(observed), float(np.nanquantile(diff, alpha)), float(np.nanquantile(diff, 1 - alpha))
