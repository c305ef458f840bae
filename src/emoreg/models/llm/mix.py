"""``mix_layers``: the head reads a learned scalar mix of the tuned layer's output and the frozen
last-token states entering lower layers (ELMo's scalar mix), a lever of the scale issue.

Each mixed state goes through the model's final norm (so all are on one scale), then
``softmax(w)`` weighs them; ``w`` is trained with the head and starts with half the weight on the
tuned layer and the rest shared evenly. The lower layers' states are those the state cache keeps
(one pass with ``state_layers`` fills them), read at each prompt's last token only.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .model import LlmClassifier


def make_mix(clf: LlmClassifier):
    """The mix weights (tuned layer first), or None without ``mix_layers``."""
    import torch

    layers = clf.settings.head.mix_layers
    if not layers:
        return None
    start = torch.zeros(len(layers) + 1)
    start[0] = math.log(len(layers))  # half the weight on the tuned layer at the start
    return torch.nn.Parameter(start.to(clf.device_))


def last_states(clf: LlmClassifier, prefixes: list[list[int]], entering_states):
    """(prompts, mixed layers, hidden): each prompt's last-token state entering every mixed layer,
    read through ``entering_states`` (the head's cached states pass)."""
    import torch

    layers = clf.settings.head.mix_layers
    if not layers:
        return None
    per_layer = [torch.stack([s[-1] for s in entering_states(clf, prefixes, layer)]) for layer in layers]
    return torch.stack(per_layer, 1).float()


def mixed(clf: LlmClassifier, decoder, last, extra):
    """The head's input: ``last`` (the tuned layer's normed output) mixed with ``extra`` (the lower
    layers' last-token states), or ``last`` alone."""
    import torch

    if extra is None:
        return last
    normed = torch.cat([last[:, None].float(), decoder.norm(extra.to(last.device)).float()], 1)
    return (torch.softmax(clf.mix_, 0)[None, :, None] * normed).sum(1)
