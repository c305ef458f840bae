"""Late fusion: several models fitted on the same training fold, their probabilities averaged.

    model: ensemble
    params:
      members:
        - {name: llm, model: llm, params: {head: classify, ...}}
        - {name: tfidf, model: tfidf, params: {text: utterance}}
      weights: null          # null: equal weights; or one non-negative number per member

A member's optional ``seed`` (an integer, default 0) is added to the run's seed for that member
alone, so members of the same kind and settings differ only by their seed: a seed ensemble
(``configs/experiments/annomi-llm-head18-seeds.yaml``), whose member with ``seed: 1`` is fitted exactly as the
member alone would be with ``--set seed=<run seed + 1>``.

Every member sees the same training segments and the config's prompt (sources, template,
budget); each is a fresh model of its own kind, so nothing about the fold differs from running
the members alone. The fold metadata keeps each member's test probabilities
(``member_proba``), so the members' own scores on the same fits can be reported beside the
ensemble's (``benchmarks/ensemble_members.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EmoregError
from .base import NotFittedError, SegmentClassifier
from .registry import MODELS, load_model, make_model


def _check_members(members: Any, weights: Any) -> list[dict]:
    if not isinstance(members, list) or len(members) < 2:
        raise EmoregError("ensemble: params.members must list two or more models, e.g. "
                          "[{name: llm, model: llm, params: {...}}, {name: tfidf, model: tfidf}]")
    names = []
    for i, m in enumerate(members):
        where = f"ensemble: params.members[{i}]"
        if not isinstance(m, dict) or not isinstance(m.get("model"), str):
            raise EmoregError(f"{where} must be a mapping with a `model` (and optional `name`, `params`)")
        unknown = sorted(set(m) - {"name", "model", "params", "seed"})
        if unknown:
            raise EmoregError(f"{where} has unknown key(s) {', '.join(unknown)} (valid: name, model, params, seed)")
        seed = m.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise EmoregError(f"{where}.seed must be a non-negative integer added to the run's seed "
                              f"for this member (got {seed!r}), e.g. seed: 1")
        if m["model"] not in MODELS or m["model"] == "ensemble":
            valid = ", ".join(sorted(k for k in MODELS if k != "ensemble"))
            raise EmoregError(f"{where}: unknown model {m['model']!r}; choose from: {valid}")
        params = m.get("params") or {}
        if not isinstance(params, dict):
            raise EmoregError(f"{where}.params must be a mapping of parameters")
        try:
            MODELS[m["model"]].check_params(params)
        except EmoregError as exc:
            raise EmoregError(f"{where}: {exc}") from None
        names.append(str(m.get("name") or m["model"]))
    if len(set(names)) != len(names):
        raise EmoregError(f"ensemble: member names must differ (got {names}); give each a `name`")
    if weights is not None:
        if (not isinstance(weights, list) or len(weights) != len(members)
                or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights)
                or not sum(weights) > 0):
            raise EmoregError(f"ensemble: params.weights must be null (equal) or {len(members)} non-negative "
                              f"numbers, not all zero; got {weights!r}")
    return [{"name": n, "model": m["model"], "params": dict(m.get("params") or {}), "seed": m.get("seed", 0)}
            for n, m in zip(names, members)]


class Ensemble(SegmentClassifier):
    name = "ensemble"
    defaults = {"members": None, "weights": None}
    checkpoint_dir: Path | None = None  # set by the runner; each member that resumes gets a subfolder

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        super().check_params(params)
        _check_members(params.get("members"), params.get("weights"))

    @classmethod
    def inputs(cls, params, sources):
        specs = params.get("members") or []
        return " + ".join(f"{m.get('name') or m['model']}: {MODELS[m['model']].inputs(m.get('params') or {}, sources)}"
                          for m in specs if m.get("model") in MODELS)

    def _weights(self) -> np.ndarray:
        w = self._param("weights")
        w = np.ones(len(self.specs_)) if w is None else np.asarray(w, dtype=float)
        return w / w.sum()

    def _fit(self, segments, y):
        self.specs_ = _check_members(self._param("members"), self._param("weights"))
        self.members_ = []
        for spec in self.specs_:
            member = make_model(spec["model"], self.task, self.prompt, self.seed + spec["seed"], spec["params"])
            if hasattr(member, "checkpoint_dir") and self.checkpoint_dir is not None:
                member.checkpoint_dir = Path(self.checkpoint_dir) / spec["name"]
            self.members_.append(member.fit(segments))

    def _predict_proba(self, segments):
        if not hasattr(self, "members_"):
            raise NotFittedError("ensemble: call fit() before predict_proba()")
        probas = [m.predict_proba(segments) for m in self.members_]
        self.member_proba_ = {s["name"]: p for s, p in zip(self.specs_, probas)}
        return sum(w * p for w, p in zip(self._weights(), probas))

    def describe(self) -> dict[str, Any]:
        members = {s["name"]: (m.describe() if hasattr(m, "describe") else {})
                   for s, m in zip(getattr(self, "specs_", []), getattr(self, "members_", []))}
        dtypes = sorted({d.get("dtype") for d in members.values()} - {None})
        return {"members": members, "weights": self._weights().tolist() if hasattr(self, "specs_") else None,
                "dtype": dtypes[0] if len(dtypes) == 1 else ("mixed" if dtypes else None),
                "member_proba": {k: np.round(v, 6).tolist() for k, v in getattr(self, "member_proba_", {}).items()}}

    def save(self, folder: str | Path) -> Path:
        if not hasattr(self, "members_"):
            raise NotFittedError("ensemble: fit the model before saving it")
        folder = Path(folder)
        for spec, member in zip(self.specs_, self.members_):
            member.save(folder / "members" / spec["name"])
        self._write_spec(folder)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Ensemble:
        folder = Path(folder)
        model, spec = cls._from_spec(folder)
        model.specs_ = _check_members(model._param("members"), model._param("weights"))
        model.members_ = [load_model(folder / "members" / s["name"]) for s in model.specs_]
        model.labels_ = tuple(spec["labels"])
        return model

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        for key in ("members_", "member_proba_"):
            state.pop(key, None)
        return state
