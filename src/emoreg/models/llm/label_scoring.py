"""``head: lm`` (the study's formulation): LoRA training with the loss on the answer tokens (the
label's text and the end-of-turn token; ``trainer``, or the plain Hugging Face recipe,
``hf_recipe``), prediction by scoring every label as a continuation (``scoring``) or by greedy
generation and label matching (``generate``); ``epochs: 0`` is the zero-shot baseline. Shares the
loader, settings and saved-folder frame of ``model.LlmClassifier``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .model import LlmClassifier


class LabelScoringLlm(LlmClassifier, head="lm"):
    """``model: llm`` with ``head: lm``."""

    def _build(self, base, adapter: Path | None):
        return self._with_lora(base, adapter)

    def _train(self, segments, y: np.ndarray) -> None:
        if self.settings.training.epochs == 0:
            return  # zero-shot
        prefixes = self._encode(segments)
        if self.settings.training.trainer == "hf":
            from .hf_recipe import fit_hf

            return fit_hf(self, [p + self.label_ids_[c] for p, c in zip(prefixes, y)])
        from .trainer import fit_lora

        fit_lora(self, prefixes, y)

    def _predict_prefixes(self, prefixes: list[list[int]]) -> np.ndarray:
        if self.settings.model.decode == "generate":
            from .generate import generate

            return generate(self, prefixes)
        return self.score_prefixes(prefixes)

    def score_prefixes(self, prefixes: list[list[int]]) -> np.ndarray:
        """Label probabilities for tokenised prompts (``scoring``; the explainer re-scores with it)."""
        from .scoring import score_prefixes

        return score_prefixes(self, prefixes)
