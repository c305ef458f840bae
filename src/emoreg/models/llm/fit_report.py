"""What a fit of the LLM measured and chose, besides the weights it learned: one object the
states pass, the training loops and the depth choice write to, and ``describe()`` (the fold
metadata, the report) reads, instead of attributes scattered onto the classifier."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class FitReport:
    states_computed: int = 0
    """Prompts whose frozen-layer states this classifier computed (fit and predict together)."""
    states_reused: int = 0
    """Prompts whose states came from the cache (memory or disk)."""
    states_tokens: int = 0
    """Prompt tokens whose states the pass computed (the prompts of ``states_computed``)."""
    states_tokens_shared: int = 0
    """Of those, tokens not run again: a prefix common to a batch's prompts runs once per batch."""
    states_seconds: float | None = None
    """Seconds of the training prompts' states pass (head classify)."""
    train_seconds: float | None = None
    """Seconds of training, the states pass excluded."""
    depth_choice: dict[str, Any] | None = None
    """``layers: auto``: the depth and epochs chosen on the inner split, and every inner score."""
