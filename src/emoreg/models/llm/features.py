"""Frozen LLM + logistic regression: a baseline that uses the LLM without training it."""

from __future__ import annotations

import numpy as np

from ...errors import EmoregError
from ...progress import progress
from ..base import SegmentClassifier
from ..rules import choice, or_null, positive, text, whole
from .loading import load_base
from .model import LlmClassifier
from .tokens import DEFAULT_SYSTEM, padded


class LlmFeatures(SegmentClassifier):
    """Frozen LLM + logistic regression: a prompt's hidden states (chat template applied), pooled
    over its tokens, standardised, under a class-balanced logistic regression fitted on the
    training subjects. The LLM is not trained, so its features depend on the text alone and are
    cached per process.

    layer: null (default) for the last layer's output after the final norm, or k for the states
    entering decoder layer k (0: the token embeddings), Hugging Face's ``hidden_states[k]``; only
    the first k layers run, and those states are the ones ``head: classify`` caches (memory and
    disk, ``states.entering_states``), so a layer a head run has cached costs nothing here.
    pool: mean (over the prompt's tokens) or last (the prompt's last token, where the answer
    would start). C, class_weight: the logistic regression's. batch_size: prompts per pass.
    dtype: auto, bf16 or fp32. system: the chat template's system message (null: the model's).
    """

    name = "llm-features"
    defaults = {"model": "smollm2-135m", "C": 1.0, "class_weight": "balanced", "batch_size": 8,
                "dtype": "auto", "system": DEFAULT_SYSTEM, "layer": None, "pool": "mean"}
    rules = {"model": text(), "C": positive(), "class_weight": choice("balanced", None), "batch_size": whole(1),
             "dtype": choice("auto", "bf16", "fp32"), "layer": or_null(whole(0)), "pool": choice("mean", "last")}
    _cache: dict = {}  # per process: the features of each model, dtype, layer and pooling

    inputs = LlmClassifier.inputs

    def _helper(self) -> LlmClassifier:
        """The frozen LLM that encodes the prompts (its dtype, state cache), its weights loaded once
        per process and model: in bf16 they are stored in bf16, as the head's are (the same states,
        cache-compatible)."""
        return LlmClassifier.frozen(self.task, self.prompt, self.seed, loader=_shared_base, model=self._param("model"),
                                    dtype=self._param("dtype"), system=self._param("system"),
                                    score_batch=self._param("batch_size"))

    def _features(self, segments) -> np.ndarray:
        helper = self._helper()
        self.dtype_ = "bf16" if helper.bf16_ else "fp32"
        # by the prompt's tokens (the LLM is frozen), per process, model, dtype, layer and pooling
        vectors = LlmFeatures._cache.setdefault(
            (self._param("model"), helper.bf16_, self._param("layer"), self._param("pool")), {})
        keys = [tuple(helper._prefix_ids(s)) for s in segments]
        todo = sorted({k for k in keys if k not in vectors}, key=len)
        if todo:
            layer = self._param("layer")
            pooled = self._pooled_states(helper, todo, layer) if layer is not None else self._pooled_last(helper, todo)
            vectors.update(zip(todo, pooled))
        return np.stack([vectors[k] for k in keys])

    def _pool(self, hidden, mask) -> np.ndarray:
        """(batch, tokens, hidden) states and their mask -> (batch, hidden) features, float32."""
        hidden = hidden.float()
        if self._param("pool") == "last":
            import torch

            return hidden[torch.arange(len(hidden)), mask.sum(-1) - 1].numpy()
        return ((hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)).numpy()

    def _pooled_last(self, helper: LlmClassifier, todo: list[tuple]) -> list[np.ndarray]:
        import torch

        out = []
        size = self._param("batch_size")
        with torch.inference_mode():
            for start in progress(range(0, len(todo), size), desc="LLM features", unit="batch", leave=False):
                ids, mask = padded([list(k) for k in todo[start:start + size]], helper.pad_id_)
                with helper._autocast():
                    hidden = helper.model_.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
                out += list(self._pool(hidden, mask))
        return out

    def _pooled_states(self, helper: LlmClassifier, todo: list[tuple], layer: int) -> list[np.ndarray]:
        from .cut import decoder_of
        from .states import entering_states

        n = len(decoder_of(helper.model_)[1].layers)
        if layer >= n:
            raise EmoregError(f"llm-features: layer must be from 0 to {n - 1} (the states entering that decoder "
                              f"layer of {self._param('model')}), or null for the last layer's output; got {layer}")
        states = entering_states(helper, [list(k) for k in todo], layer)
        out = []
        for start in range(0, len(states), 256):
            part = states[start:start + 256]
            x, mask = padded(part, 0)
            out += list(self._pool(x, mask))
        return out

    def describe(self) -> dict:
        return {"dtype": getattr(self, "dtype_", None), "layer": self._param("layer"), "pool": self._param("pool")}

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


_BASES: dict = {}  # per process: the frozen models loaded, by name and dtype


def _shared_base(name: str, bf16: bool):
    if (name, bf16) not in _BASES:
        _BASES[name, bf16] = load_base(name, bf16=bf16)
    return _BASES[name, bf16]

