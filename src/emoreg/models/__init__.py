"""Classifiers by name. Every model follows ``Classifier`` (see ``base``)."""

from __future__ import annotations

from typing import Any

from ..errors import EmoregError
from ..prompts import PromptConfig
from ..tasks import Task
from .bayesnet import BayesNet
from .base import Classifier, NotFittedError, SegmentClassifier, load_model
from .chance import Majority, StratifiedRandom
from .embedding import EmbeddingLogReg
from .tfidf import TfidfLogReg

MODELS: dict[str, type[SegmentClassifier]] = {
    cls.name: cls for cls in (Majority, StratifiedRandom, TfidfLogReg, EmbeddingLogReg, BayesNet)
}


def register(cls: type[SegmentClassifier]) -> type[SegmentClassifier]:
    MODELS[cls.name] = cls
    return cls


def make_model(name: str, task: Task, prompt: PromptConfig, seed: int, params: dict[str, Any]) -> SegmentClassifier:
    """A fresh, unfitted model; unknown names and parameters are errors that list the valid ones."""
    if name not in MODELS:
        raise EmoregError(f"unknown model {name!r}; choose from: {', '.join(sorted(MODELS))}")
    cls = MODELS[name]
    cls.check_params(params)
    return cls(task=task, prompt=prompt, seed=seed, **params)


__all__ = ["Classifier", "MODELS", "NotFittedError", "SegmentClassifier", "load_model", "make_model", "register"]
