"""Frozen LLM + logistic regression: a baseline that uses the LLM without training it."""

from __future__ import annotations

import numpy as np

from ...progress import progress
from ..base import SegmentClassifier
from ..rules import choice, positive, text, whole
from .loading import load_base
from .model import LlmClassifier
from .tokens import DEFAULT_SYSTEM, answer_ids, padded


class LlmFeatures(SegmentClassifier):
    """Frozen LLM + logistic regression: the mean of the last hidden states over the prompt's
    tokens (chat template applied), class-balanced logistic regression on top. The LLM is not
    trained, so its features depend on the text alone and are cached per process."""

    name = "llm-features"
    defaults = {"model": "smollm2-135m", "C": 1.0, "class_weight": "balanced", "batch_size": 8,
                "dtype": "auto", "system": DEFAULT_SYSTEM}
    rules = {"model": text(), "C": positive(), "class_weight": choice("balanced", None), "batch_size": whole(1),
             "dtype": choice("auto", "bf16", "fp32")}
    _cache: dict = {}  # per process: loaded frozen models and their features

    inputs = LlmClassifier.inputs

    def _features(self, segments) -> np.ndarray:
        import torch

        helper = LlmClassifier(self.task, self.prompt, self.seed, model=self._param("model"),
                               dtype=self._param("dtype"), system=self._param("system"))
        helper._setup()
        self.dtype_ = "bf16" if helper.bf16_ else "fp32"
        shared = LlmFeatures._cache.setdefault(self._param("model"), {})
        if "model" not in shared:
            shared["model"], shared["tokenizer"] = load_base(self._param("model"))
        model, helper.tokenizer_ = shared["model"], shared["tokenizer"]
        _, helper.pad_id_ = answer_ids(helper.tokenizer_, self.task.labels)
        vectors = shared.setdefault("vectors", {})  # by the prompt's tokens: the LLM is frozen
        keys = [tuple(helper._prefix_ids(s)) for s in segments]
        todo = sorted({k for k in keys if k not in vectors}, key=len)
        size = self._param("batch_size")
        with torch.inference_mode():
            for start in progress(range(0, len(todo), size), desc="LLM features", unit="batch", leave=False):
                batch = todo[start:start + size]
                ids, mask = padded([list(k) for k in batch], helper.pad_id_)
                with helper._autocast():
                    hidden = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
                pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
                for b, k in enumerate(batch):
                    vectors[k] = pooled[b].numpy()
        return np.stack([vectors[k] for k in keys])

    def describe(self) -> dict:
        return {"dtype": getattr(self, "dtype_", None)}

    def _fit(self, segments, y):
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        X = self._features(segments)
        self.scaler_ = StandardScaler().fit(X)  # fitted on the training fold only
        self.model_ = LogisticRegression(C=self._param("C"), class_weight=self._param("class_weight"),
                                         max_iter=3000, random_state=self.seed)
        self.model_.fit(self.scaler_.transform(X), y)

    def _predict_proba(self, segments):
        X = self.scaler_.transform(self._features(segments))
        return self._full_columns(self.model_.predict_proba(X), self.model_.classes_)
