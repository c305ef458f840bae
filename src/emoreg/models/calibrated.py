"""Any model, its probabilities calibrated and its decisions tuned on training subjects only.

In an evaluation config::

    calibrate: temperature        # or vector, or none; the short form of
    calibrate: {method: temperature, decide: argmax, inner_share: 0.2, refit: true}

Inside each fold, ``fit`` holds out a share of the *training* subjects (an inner validation
split; never a test subject), fits the model on the rest, and on the held-out subjects' segments
fits

* ``method``: ``temperature`` (one scale of the log-probabilities, by log-loss), ``vector``
  (a scale and a bias per label, by log-loss, lightly L2-regularised), or ``none``;
* ``decide``: ``argmax`` (the calibrated probabilities as they are) or ``macro-f1``: one additive
  bias per label on the calibrated log-probabilities, chosen by coordinate search to maximise
  macro-F1 on the held-out segments. A prior shift for the metric the study reports; the
  probabilities it returns are then the decision-adjusted ones, and reports say so.

With ``refit: true`` (the default) the model is then fitted again on all training subjects and
the fitted calibration applied to it; with ``refit: false`` the inner model is kept (half the
cost for a slow model, a share of the training data less). ``describe()`` records the split,
the fitted numbers and the held-out log-loss and macro-F1 before and after.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import EmoregError
from .wrapped import Wrapped

METHODS = ("temperature", "vector", "none")
DECISIONS = ("argmax", "macro-f1")
TINY = 1e-12


def normalise_spec(raw: Any) -> dict[str, Any] | None:
    """The ``calibrate:`` config value as a full mapping (None: off), with every problem named."""
    if raw is None or raw == "none":
        return None
    spec = {"method": raw} if isinstance(raw, str) else raw
    if not isinstance(spec, dict):
        raise EmoregError(f"calibrate: expected temperature, vector, none or a mapping, found {raw!r}")
    unknown = sorted(set(spec) - {"method", "decide", "inner_share", "refit"})
    if unknown:
        raise EmoregError(f"calibrate: unknown key(s) {', '.join(unknown)} (valid: method, decide, inner_share, refit)")
    spec = {"method": "temperature", "decide": "argmax", "inner_share": 0.2, "refit": True} | spec
    if spec["method"] not in METHODS:
        raise EmoregError(f"calibrate.method: expected one of {', '.join(METHODS)}, found {spec['method']!r}")
    if spec["decide"] not in DECISIONS:
        raise EmoregError(f"calibrate.decide: expected one of {', '.join(DECISIONS)}, found {spec['decide']!r}")
    share = spec["inner_share"]
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share < 1:
        raise EmoregError(f"calibrate.inner_share: expected a share of the training subjects between 0 and 1 "
                          f"(e.g. 0.2), found {share!r}")
    if not isinstance(spec["refit"], bool):
        raise EmoregError(f"calibrate.refit: expected true or false, found {spec['refit']!r}")
    if spec["method"] == "none" and spec["decide"] == "argmax":
        return None
    return spec


def inner_split(subjects: list[str], share: float, seed: int) -> tuple[set[str], set[str]]:
    """Training subjects split into (fit, held out), at least one of each, seeded."""
    if len(subjects) < 2:
        raise EmoregError(f"calibrate: needs at least 2 training subjects to hold some out, found {len(subjects)}")
    order = np.random.default_rng(seed).permutation(sorted(subjects))
    n_out = min(max(1, round(share * len(order))), len(order) - 1)
    return set(order[n_out:].tolist()), set(order[:n_out].tolist())


def _log(proba: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(proba, dtype=float))  # 0 -> -inf: a label the model cannot give stays at 0


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _nll(z: np.ndarray, y: np.ndarray) -> float:
    p = _softmax(z)[np.arange(len(y)), y]
    return float(-np.log(np.maximum(p, TINY)).mean())


def macro_f1(y: np.ndarray, pred: np.ndarray, k: int) -> float:
    scores = []
    for c in range(k):
        tp = np.sum((pred == c) & (y == c))
        fp = np.sum((pred == c) & (y != c))
        fn = np.sum((pred != c) & (y == c))
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def fit_temperature(z: np.ndarray, y: np.ndarray) -> float:
    from scipy.optimize import minimize_scalar

    finite = np.where(np.isfinite(z), z, -1e9)
    result = minimize_scalar(lambda t: _nll(finite / np.exp(t), y), bounds=(-3, 3), method="bounded")
    return float(np.exp(result.x))


def fit_vector(z: np.ndarray, y: np.ndarray, l2: float = 1e-2) -> tuple[np.ndarray, np.ndarray]:
    """Per-label scale and bias on the log-probabilities, by log-loss (+ L2 towards 1 and 0)."""
    from scipy.optimize import minimize

    k = z.shape[1]
    finite = np.where(np.isfinite(z), z, -1e9)
    onehot = np.eye(k)[y]

    def loss(theta):
        w, b = theta[:k], theta[k:]
        logits = finite * w + b
        p = _softmax(logits)
        value = -np.mean(np.sum(onehot * np.log(np.maximum(p, TINY)), axis=1))
        value += l2 * (np.sum((w - 1) ** 2) + np.sum(b ** 2))
        g = (p - onehot) / len(y)
        grad = np.concatenate([np.sum(g * finite, axis=0) + 2 * l2 * (w - 1), np.sum(g, axis=0) + 2 * l2 * b])
        return value, grad

    theta = minimize(loss, np.concatenate([np.ones(k), np.zeros(k)]), jac=True, method="L-BFGS-B").x
    return theta[:k], theta[k:]


def fit_biases(z: np.ndarray, y: np.ndarray, grid: np.ndarray = np.round(np.arange(-3, 3.01, 0.1), 2),
               passes: int = 3) -> np.ndarray:
    """Additive per-label biases maximising macro-F1 of argmax(z + b): coordinate search over a
    grid, label by label, a few passes; ties keep the smaller bias (the plainer decision)."""
    k = z.shape[1]
    b = np.zeros(k)
    finite = np.where(np.isfinite(z), z, -1e9)
    best = macro_f1(y, np.argmax(finite + b, axis=1), k)
    for _ in range(passes):
        changed = False
        for c in range(k):
            for value in sorted(grid, key=abs):
                trial = b.copy()
                trial[c] = value
                score = macro_f1(y, np.argmax(finite + trial, axis=1), k)
                if score > best + 1e-12:
                    best, b, changed = score, trial, True
        if not changed:
            break
    return b


class Calibrated(Wrapped):
    """The wrapped model is named by ``model`` and ``params``; see the module docstring."""

    name = "calibrated"
    defaults = {"model": None, "params": {}, "method": "temperature", "decide": "argmax", "inner_share": 0.2,
                "refit": True}
    own = ("method", "decide", "inner_share", "refit")

    @classmethod
    def check_own(cls, options: dict[str, Any]) -> None:
        normalise_spec(options)

    def _transform(self, z: np.ndarray) -> np.ndarray:
        method = self._param("method")
        if method == "temperature":
            z = z / self.temperature_
        elif method == "vector":
            z = np.where(np.isfinite(z), z * self.scale_ + self.shift_, -np.inf)
        return z + self.biases_

    def _fit(self, segments, y):
        kept, held = inner_split(sorted({s.subject_id for s in segments}), self._param("inner_share"), self.seed)
        fit_idx = [i for i, s in enumerate(segments) if s.subject_id in kept]
        val_idx = [i for i, s in enumerate(segments) if s.subject_id in held]
        inner = self._inner("inner").fit([segments[i] for i in fit_idx])
        z = _log(inner.predict_proba([segments[i] for i in val_idx]))
        y_val = np.asarray(y)[val_idx]
        k = len(self.task.labels)
        self.temperature_, self.scale_, self.shift_ = 1.0, np.ones(k), np.zeros(k)
        self.biases_ = np.zeros(k)
        method = self._param("method")
        if method == "temperature":
            self.temperature_ = fit_temperature(z, y_val)
        elif method == "vector":
            self.scale_, self.shift_ = fit_vector(z, y_val)
        calibrated = self._transform(z)
        if self._param("decide") == "macro-f1":
            self.biases_ = fit_biases(calibrated, y_val)
        final = self._transform(z)
        self.report_ = {
            "method": method, "decide": self._param("decide"), "refit": self._param("refit"),
            "held_out_subjects": len(held), "held_out_segments": len(val_idx), "fit_segments": len(fit_idx),
            "temperature": self.temperature_, "scale": self.scale_.tolist(), "shift": self.shift_.tolist(),
            "biases": self.biases_.tolist(),
            "held_out_nll": {"before": _nll(np.where(np.isfinite(z), z, -1e9), y_val),
                             "after": _nll(np.where(np.isfinite(final), final, -1e9), y_val)},
            "held_out_macro_f1": {"before": macro_f1(y_val, np.argmax(z, axis=1), k),
                                  "after": macro_f1(y_val, np.argmax(final, axis=1), k)},
        }
        self.model_ = self._inner("refit").fit(segments) if self._param("refit") else inner

    def _predict_proba(self, segments):
        return _softmax(self._transform(_log(self._fitted().predict_proba(segments))))

    def facts(self) -> dict[str, Any]:
        return {"calibration": getattr(self, "report_", None)}

    def fitted_state(self) -> dict[str, Any]:
        return {"temperature": self.temperature_, "scale": self.scale_.tolist(), "shift": self.shift_.tolist(),
                "biases": self.biases_.tolist(), "report": self.report_}

    def restore(self, state: dict[str, Any]) -> None:
        self.temperature_ = float(state["temperature"])
        self.scale_, self.shift_ = np.asarray(state["scale"]), np.asarray(state["shift"])
        self.biases_, self.report_ = np.asarray(state["biases"]), state["report"]
