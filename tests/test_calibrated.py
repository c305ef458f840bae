"""calibrate: probabilities calibrated, and decisions tuned, on training subjects only."""

import numpy as np
import pytest

from emoreg.errors import ValidationError
from emoreg.evaluation.config import config_from_dict
from emoreg.models import load_model, make_model
from emoreg.models.calibrated import _nll, _softmax, fit_biases, fit_temperature, fit_vector, macro_f1
from emoreg.prompts import PromptConfig
from emoreg.tasks import DEEP_SHAME

TFIDF = {"text": "prompt", "min_df": 1}


def sampled(temperature, n=6000, k=4, seed=0):
    """Log-probabilities z of a model whose true probabilities are softmax(z / temperature)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, (n, k))
    truth = _softmax(z / temperature)
    y = np.array([rng.choice(k, p=p) for p in truth])
    return np.log(_softmax(z)), y


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_temperature_scaling_recovers_the_true_temperature(temperature):
    z, y = sampled(temperature)
    fitted = fit_temperature(z, y)
    assert abs(fitted - temperature) / temperature < 0.1
    assert _nll(z / fitted, y) < _nll(z, y)


def test_vector_scaling_fixes_a_shifted_label_and_beats_temperature():
    z, y = sampled(1.0, k=3)
    shifted = z + np.array([1.5, 0, 0])  # the model overrates label 0
    scale, shift = fit_vector(shifted, y)
    assert shift[0] - shift[1:].mean() < -1.0
    assert _nll(shifted * scale + shift, y) < _nll(shifted / fit_temperature(shifted, y), y)


def test_decision_biases_raise_macro_f1_where_argmax_never_picks_the_rare_label():
    rng = np.random.default_rng(1)
    y = rng.choice(3, size=3000, p=[0.7, 0.2, 0.1])
    z = np.log(np.full((3000, 3), [0.6, 0.25, 0.15]))
    z[np.arange(3000), y] += 0.3  # informative, but too weak to beat the majority's prior
    assert set(np.argmax(z, 1)) == {0}
    b = fit_biases(z, y)
    assert macro_f1(y, np.argmax(z + b, 1), 3) > macro_f1(y, np.argmax(z, 1), 3) + 0.2
    assert set(np.argmax(z + b, 1)) == {0, 1, 2}


def test_a_calibrated_model_round_trips_and_says_what_it_fitted(toy_split, tmp_path):
    train, test = toy_split
    params = {"model": "tfidf", "params": TFIDF, "method": "temperature", "decide": "macro-f1", "refit": False}
    model = make_model("calibrated", DEEP_SHAME, PromptConfig(), 0, params).fit(train)
    facts = model.describe()["calibration"]
    assert facts["held_out_subjects"] >= 1 and facts["held_out_segments"] + facts["fit_segments"] == len(train)
    assert facts["temperature"] > 0 and len(facts["biases"]) == len(DEEP_SHAME.labels)
    again = load_model(model.save(tmp_path / "m"))
    assert np.allclose(again.predict_proba(test), model.predict_proba(test))
    plain = make_model("tfidf", DEEP_SHAME, PromptConfig(), 0, TFIDF).fit(train)
    assert (model.predict_proba(test) == 0).sum() == (plain.predict_proba(test) == 0).sum()  # unseen stay 0


@pytest.mark.parametrize("calibrate, message", [
    ("platt", "calibrate.method: expected one of temperature, vector, none"),
    ({"method": "vector", "inner_share": 1.5}, "calibrate.inner_share: expected a share"),
    ({"decide": "accuracy"}, "calibrate.decide: expected one of argmax, macro-f1"),
    ({"folds": 3}, "unknown key(s) folds"),
])
def test_bad_calibrate_settings_fail_when_the_config_is_read(calibrate, message):
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config_from_dict({"corpus": "deep-example", "model": "tfidf", "calibrate": calibrate}, "c.yaml")
