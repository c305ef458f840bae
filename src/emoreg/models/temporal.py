"""Decoding over a session: strategies persist in time, so a segment's label depends on its neighbours'.

In an evaluation config::

    decode: {temporal: filter}     # or smooth, or none; options: emission, alpha

A hidden Markov model over the labels, all of it fitted on the training subjects of the fold:
the transition matrix between consecutive segments of a session (counts + ``alpha``, row
normalised) and the label distribution of a session's first segment. The wrapped model's
probabilities are the emissions: with ``emission: balanced`` (the default, right for the
class-balanced models emoreg trains) they are taken as likelihoods as they are; with
``emission: posterior`` they are divided by the training label frequencies first. The transition
matrix holds the label frequencies too (most moves lead to the majority label), which costs a
class-balanced model its rare labels; ``transitions: balanced`` divides each column by its label's
frequency (and renormalises), keeping how much each label persists but not how common it is;
``transitions: counts`` (the default) keeps them as counted.

* ``filter``: forward filtering; each segment's answer uses only its session's past and itself
  (what a live service can do: ``emoreg serve`` keeps the forward message per session).
* ``smooth``: forward-backward; each segment's answer uses its whole session (offline only).

Segments of a session are ordered by ``start_s`` when every one has it, else as given.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import EmoregError
from .wrapped import Wrapped

METHODS = ("filter", "smooth")
EMISSIONS = ("balanced", "posterior")


def normalise_spec(raw: Any) -> dict[str, Any] | None:
    """The ``decode:`` config value as a full mapping (None: off)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise EmoregError(f"decode: expected a mapping such as {{temporal: filter}}, found {raw!r}")
    unknown = sorted(set(raw) - {"temporal", "emission", "alpha", "transitions"})
    if unknown:
        raise EmoregError(f"decode: unknown key(s) {', '.join(unknown)} (valid: temporal, emission, alpha, "
                          "transitions)")
    spec = {"temporal": "none", "emission": "balanced", "alpha": 1.0, "transitions": "counts"} | raw
    if spec["transitions"] not in ("counts", "balanced"):
        raise EmoregError(f"decode.transitions: expected counts or balanced, found {spec['transitions']!r}")
    if spec["temporal"] not in ("none", *METHODS):
        raise EmoregError(f"decode.temporal: expected none, filter or smooth, found {spec['temporal']!r}")
    if spec["emission"] not in EMISSIONS:
        raise EmoregError(f"decode.emission: expected balanced or posterior, found {spec['emission']!r}")
    alpha = spec["alpha"]
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise EmoregError(f"decode.alpha: expected a smoothing count above 0 (e.g. 1), found {alpha!r}")
    return None if spec["temporal"] == "none" else spec


def sessions_in_order(segments) -> dict[str, list[int]]:
    """Indices of each session's segments, in time order (``start_s`` when all have it)."""
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(segments):
        groups.setdefault(s.session_id, []).append(i)
    for key, idx in groups.items():
        if all(segments[i].start_s is not None for i in idx):
            groups[key] = sorted(idx, key=lambda i: (segments[i].start_s, i))
    return groups


def forward(emissions: np.ndarray, start: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """Filtered posteriors p(z_t | x_1..t), one row per step."""
    out = np.zeros_like(emissions)
    message = start
    for t, e in enumerate(emissions):
        belief = message * e
        total = belief.sum()
        out[t] = belief / total if total > 0 else message
        message = out[t] @ trans
    return out


def forward_backward(emissions: np.ndarray, start: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """Smoothed posteriors p(z_t | x_1..T)."""
    alpha = forward(emissions, start, trans)
    beta = np.ones_like(emissions)
    for t in range(len(emissions) - 2, -1, -1):
        b = trans @ (emissions[t + 1] * beta[t + 1])
        beta[t] = b / b.sum() if b.sum() > 0 else 1.0
    post = alpha * beta
    return post / np.maximum(post.sum(axis=1, keepdims=True), 1e-300)


class Temporal(Wrapped):
    """The wrapped model is named by ``model`` and ``params``; see the module docstring."""

    name = "temporal"
    defaults = {"model": None, "params": {}, "temporal": "filter", "emission": "balanced", "alpha": 1.0,
                "transitions": "counts"}
    own = ("temporal", "emission", "alpha", "transitions")

    @classmethod
    def check_own(cls, options: dict[str, Any]) -> None:
        normalise_spec(options)

    @classmethod
    def inputs(cls, params, sources):
        return super().inputs(params, sources) + " + session decoding"

    def _fit(self, segments, y):
        self.model_ = self._inner().fit(segments)
        k, alpha = len(self.task.labels), float(self._param("alpha"))
        counts, first = np.full((k, k), alpha), np.full(k, alpha)
        for idx in sessions_in_order(segments).values():
            labels = [y[i] for i in idx]
            first[labels[0]] += 1
            for a, b in zip(labels, labels[1:]):
                counts[a, b] += 1
        self.prior_ = np.bincount(y, minlength=k) / len(y)
        if self._param("transitions") == "balanced":  # persistence without the label frequencies
            frequency = np.maximum(self.prior_, 1e-12)
            counts, first = counts / frequency, first / frequency
        self.transitions_ = counts / counts.sum(axis=1, keepdims=True)
        self.start_ = first / first.sum()

    def emissions(self, proba: np.ndarray) -> np.ndarray:
        if self._param("emission") == "posterior":
            return proba / np.maximum(self.prior_, 1e-12)
        return proba

    def _predict_proba(self, segments):
        proba = self._fitted().predict_proba(segments)
        out = np.zeros_like(proba)
        decode = forward if self._param("temporal") == "filter" else forward_backward
        for idx in sessions_in_order(segments).values():
            out[idx] = decode(self.emissions(proba[idx]), self.start_, self.transitions_)
        return out  # a label the model gives no probability (absent from training) keeps 0

    def step(self, message: np.ndarray | None, proba: np.ndarray) -> np.ndarray:
        """One live filtering step: the posterior of the newest segment given the session's
        previous posterior (``message``; None for a session's first segment)."""
        prior = self.start_ if message is None else message @ self.transitions_
        belief = prior * self.emissions(proba)
        return belief / belief.sum() if belief.sum() > 0 else prior

    def facts(self) -> dict[str, Any]:
        return {"temporal": {"method": self._param("temporal"), "emission": self._param("emission"),
                             "transitions_from": self._param("transitions"),
                             "transitions": getattr(self, "transitions_", np.zeros(0)).round(4).tolist()}}

    def fitted_state(self) -> dict[str, Any]:
        return {"transitions": self.transitions_.tolist(), "start": self.start_.tolist(), "prior": self.prior_.tolist()}

    def restore(self, state: dict[str, Any]) -> None:
        self.transitions_ = np.asarray(state["transitions"])
        self.start_, self.prior_ = np.asarray(state["start"]), np.asarray(state["prior"])
