import numpy as np
import pytest
from sklearn.metrics import f1_score

from emoreg.evaluation.metrics import batched_scores, confusion, per_class, scores


def test_scores_by_hand():
    # gold 0 0 0 1 1 2 ; pred 0 0 1 1 2 2
    cm = confusion([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], 3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    s = scores(cm)
    # class 0: P=2/2 R=2/3 F1=0.8; class 1: P=1/2 R=1/2 F1=0.5; class 2: P=1/2 R=1 F1=2/3
    assert s["accuracy"] == pytest.approx(4 / 6)
    assert s["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert s["weighted_f1"] == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6)
    assert s["uar"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    pc = per_class(cm)
    assert pc["precision"].tolist() == pytest.approx([1.0, 0.5, 0.5])


def test_absent_class_follows_sklearn():
    gold, pred = [0, 0, 1, 1], [0, 1, 1, 1]  # class 2 never occurs
    s = scores(confusion(gold, pred, 3))
    assert s["macro_f1"] == pytest.approx(f1_score(gold, pred, average="macro"))
    assert s["uar"] == pytest.approx((0.5 + 1.0) / 2)


def test_batched_matches_single():
    rng = np.random.default_rng(1)
    cms = rng.integers(0, 9, size=(20, 4, 4))
    batched = batched_scores(cms)
    for i, cm in enumerate(cms):
        for key, value in scores(cm).items():
            assert batched[key][i] == pytest.approx(value)


def test_empty_confusion_is_nan():
    assert np.isnan(scores(np.zeros((3, 3)))["accuracy"])
