import numpy as np
import pytest

from emoreg.evaluation.metrics import confusion, scores
from emoreg.evaluation.stats import bootstrap_ci, holm, mcnemar, paired_permutation


def _subject_cms(rng, n_subjects, accuracy):
    cms = []
    for _ in range(n_subjects):
        gold = rng.integers(0, 3, 30)
        pred = np.where(rng.random(30) < accuracy, gold, (gold + 1) % 3)
        cms.append(confusion(gold, pred, 3))
    return np.stack(cms)


def test_bootstrap_ci_brackets_the_estimate_and_is_seeded():
    rng = np.random.default_rng(0)
    cms = _subject_cms(rng, 25, 0.7)
    ci = bootstrap_ci(cms, n_boot=500, seed=3)
    value = scores(cms.sum(axis=0))["accuracy"]
    assert ci["accuracy"][0] < value < ci["accuracy"][1]
    assert ci["accuracy"][1] - ci["accuracy"][0] < 0.15
    assert bootstrap_ci(cms, n_boot=500, seed=3) == ci


def test_permutation_test_identical_and_different_systems():
    rng = np.random.default_rng(0)
    good = _subject_cms(rng, 20, 0.9)
    bad = _subject_cms(rng, 20, 0.4)
    equal = paired_permutation(good, _subject_cms(rng, 20, 0.9), n_perm=999)  # as good, other mistakes
    assert abs(equal["accuracy"]["difference"]) < 0.05 and equal["accuracy"]["p"] > 0.05
    diff = paired_permutation(good, bad, n_perm=999)
    assert diff["accuracy"]["difference"] > 0.4
    assert diff["accuracy"]["p"] == pytest.approx(1 / 1000)  # no permutation is as extreme


def test_mcnemar_by_hand():
    a = np.array([1, 1, 1, 1, 0, 0, 1, 1], dtype=bool)
    b = np.array([0, 0, 0, 1, 0, 1, 1, 1], dtype=bool)
    out = mcnemar(a, b)
    assert (out["a_only"], out["b_only"]) == (3, 1)
    assert out["p"] == pytest.approx(0.625)  # two-sided binomial, 4 discordant pairs, 1 vs 3


def test_holm_by_hand():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]
