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


def _parts(proba, gold, subjects):
    from emoreg.evaluation.metrics import calibration_parts

    names = sorted(set(subjects))
    return calibration_parts(np.asarray(proba), np.asarray(gold), np.array([names.index(s) for s in subjects]),
                             len(names))


def test_probability_metrics_match_sklearn_and_a_hand_computed_ece():
    from sklearn.metrics import log_loss

    from emoreg.evaluation.metrics import batched_proba_scores

    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(3), size=300)
    gold = rng.integers(0, 3, size=300)
    subjects = [f"s{i % 7}" for i in range(300)]
    got = {k: float(v[0]) for k, v in batched_proba_scores(np.ones((1, 7)), _parts(proba, gold, subjects)).items()}
    assert got["log_loss"] == pytest.approx(log_loss(gold, proba, labels=[0, 1, 2]))
    assert got["brier"] == pytest.approx(np.mean(np.sum((proba - np.eye(3)[gold]) ** 2, axis=1)))
    confidence, correct = proba.max(1), (proba.argmax(1) == gold)
    order = np.argsort(confidence, kind="stable")
    ece = sum(abs(np.sum(confidence[b] - correct[b])) for b in np.array_split(order, 15)) / 300
    assert got["ece"] == pytest.approx(ece)


def test_ece_tells_a_calibrated_model_from_an_overconfident_one():
    from emoreg.evaluation.metrics import batched_proba_scores

    rng = np.random.default_rng(1)
    proba = rng.dirichlet(np.ones(3), size=6000)
    gold = np.array([rng.choice(3, p=p) for p in proba])  # the probabilities are the truth
    sharp = proba ** 4 / (proba ** 4).sum(1, keepdims=True)  # same ranking, overconfident
    subjects = [f"s{i % 30}" for i in range(6000)]
    calibrated = batched_proba_scores(np.ones((1, 30)), _parts(proba, gold, subjects))
    overconfident = batched_proba_scores(np.ones((1, 30)), _parts(sharp, gold, subjects))
    assert calibrated["ece"][0] < 0.03 < 0.1 < overconfident["ece"][0]
    assert calibrated["log_loss"][0] < overconfident["log_loss"][0]
