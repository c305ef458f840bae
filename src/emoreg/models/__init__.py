"""Classifiers by name. Every model is a ``SegmentClassifier`` (see ``base``): ``fit``, ``predict_proba``
(columns in the task's label order), ``predict``, ``save`` and ``load``."""

from __future__ import annotations

from .base import NotFittedError, SegmentClassifier
from .bayesnet import BayesNet
from .calibrated import Calibrated
from .chance import Majority, StratifiedRandom
from .embedding import EmbeddingLogReg
from .encoder_ft import FinetunedEncoder
from .ensemble import Ensemble
from .llm import LlmClassifier, LlmFeatures
from .registry import MODELS, load_model, make_model
from .replay import Replay
from .temporal import Temporal
from .tfidf import TfidfLogReg

MODELS.update({cls.name: cls for cls in (Majority, StratifiedRandom, TfidfLogReg, EmbeddingLogReg, BayesNet,
                                         LlmClassifier, LlmFeatures, Ensemble, FinetunedEncoder, Calibrated,
                                         Temporal, Replay)})

__all__ = ["MODELS", "NotFittedError", "SegmentClassifier", "load_model", "make_model"]
