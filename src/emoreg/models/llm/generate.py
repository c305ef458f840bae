"""``decode: generate``, the study's alternative to scoring: greedy generation and label matching.

Answers that match no label get a uniform distribution and are counted (``unmatched_answers``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ...progress import progress

if TYPE_CHECKING:  # pragma: no cover
    from .model import LlmClassifier


def match_label(text: str, labels: tuple[str, ...]) -> str | None:
    """The label a generated answer names: the longest label the answer starts with, ignoring
    case, spaces and punctuation around it; None when it names none."""
    cleaned = text.strip().strip(".:;,!\"'` ").lower()
    hits = [label for label in labels if cleaned.startswith(label.lower())]
    return max(hits, key=len) if hits else None


def generate(clf: LlmClassifier, prefixes: list[list[int]]) -> np.ndarray:
    import torch

    labels = clf.task.labels
    out = np.zeros((len(prefixes), len(labels)))
    unmatched = 0
    longest = max(len(label) for label in clf.label_ids_)
    with torch.inference_mode():
        for i, p in enumerate(progress(prefixes, desc="generating", leave=False)):
            ids = torch.tensor([p], device=clf.device_)
            with clf._autocast():
                gen = clf.model_.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                          max_new_tokens=longest + 2, do_sample=False, pad_token_id=clf.pad_id_)
            label = match_label(clf.tokenizer_.decode(gen[0, len(p):], skip_special_tokens=True), labels)
            if label is None:
                unmatched += 1
                out[i] = 1.0 / len(labels)
            else:
                out[i, clf.task.index(label)] = 1.0
    clf.unmatched_ = getattr(clf, "unmatched_", 0) + unmatched
    return out
