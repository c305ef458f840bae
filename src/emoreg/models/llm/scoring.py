"""Label scoring (``head: lm``, ``decode: score``): every label as a continuation of the prompt.

One pass over a batch of prompts (left-padded, with a KV cache), then all label continuations
batched over that cache; the labels' summed log-likelihoods are normalised into probabilities, so
no answer is ever unparseable. In a distributed run every process scores every world-th prompt.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

from ... import distributed
from ...progress import progress
from .tokens import padded

if TYPE_CHECKING:  # pragma: no cover
    from .model import LlmClassifier


def score_prefixes(clf: LlmClassifier, prefixes: list[list[int]]) -> np.ndarray:
    """Label probabilities for tokenised prompts; the shards of a distributed run are gathered."""
    world = distributed.world_size()
    if world == 1:
        return _score_all(clf, prefixes)
    mine = list(range(distributed.rank(), len(prefixes), world))
    out = np.zeros((len(prefixes), len(clf.task.labels)))
    for index, part in distributed.gather((mine, _score_all(clf, [prefixes[i] for i in mine]))):
        out[index] = part
    return out


@contextmanager
def merged(clf: LlmClassifier):
    """With ``merge_lora: true``, the LoRA weights folded into the base weights for a scoring pass
    (no adapter matmuls beside every projection). The base weights are copied first and put back
    exactly afterwards (a merge and unmerge in bf16 would not give the same numbers back), so the
    model trains on as before. Off for 4-bit models, whose weights cannot take a merge."""
    import torch

    model = clf.model_
    wanted = clf.settings.lora.merge_lora and not clf.settings.model.quantize_4bit
    lora = [m for m in model.modules() if hasattr(m, "base_layer") and hasattr(m, "lora_A")] if wanted else []
    if not lora:
        yield
        return
    saved = [m.base_layer.weight.detach().clone() for m in lora]
    model.merge_adapter()
    try:
        yield
    finally:
        model.unmerge_adapter()
        with torch.no_grad():
            for module, weight in zip(lora, saved):
                module.base_layer.weight.copy_(weight)


def _score_all(clf: LlmClassifier, prefixes: list[list[int]]) -> np.ndarray:
    import torch

    out = np.zeros((len(prefixes), len(clf.task.labels)))
    order = sorted(range(len(prefixes)), key=lambda i: len(prefixes[i]))  # similar lengths together
    size = clf.settings.model.score_batch
    with torch.inference_mode(), merged(clf):
        for start in progress(range(0, len(order), size), desc="scoring", unit="batch", leave=False):
            idx = order[start:start + size]
            out[idx] = _score_batch(clf, [prefixes[i] for i in idx])
    return out


def _cache_arg(model) -> str:
    forward = inspect.signature(model.get_base_model().forward).parameters
    return "cache" if "cache" in forward else "past_key_values"  # transformers 5 / 4 names


def _score_batch(clf: LlmClassifier, prefixes: list[list[int]]) -> np.ndarray:
    import torch

    device, model, label_ids = clf.device_, clf.model_, clf.label_ids_
    B, K = len(prefixes), len(label_ids)
    ids, mask = padded(prefixes, clf.pad_id_, left=True)  # every prompt ends at the last column
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    ids, mask, positions = ids.to(device), mask.to(device), positions.to(device)
    with clf._autocast():
        first = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    first_logp = torch.log_softmax(first.logits[:, -1].float(), dim=-1)  # (B, V)
    label_first = torch.tensor([ids_[0] for ids_ in label_ids], device=device)
    total = first_logp[:, label_first]  # (B, K)
    longest = max(len(label) for label in label_ids)
    if longest > 1:
        cont = torch.full((K, longest - 1), clf.pad_id_, dtype=torch.long)
        cont_mask = torch.zeros((K, longest - 1), dtype=torch.long)
        targets = torch.zeros((K, longest - 1), dtype=torch.long)
        for k, label in enumerate(label_ids):
            cont[k, :len(label) - 1] = torch.tensor(label[:-1])
            cont_mask[k, :len(label) - 1] = 1
            targets[k, :len(label) - 1] = torch.tensor(label[1:])
        cache = getattr(first, "cache", None) or first.past_key_values  # transformers 5 / 4 names
        cache.batch_repeat_interleave(K)
        lengths = mask.sum(-1).repeat_interleave(K)  # (B*K,)
        step = torch.arange(longest - 1, device=device)
        cont_ids = cont.repeat(B, 1).to(device)
        cont_m = cont_mask.repeat(B, 1).to(device)
        with clf._autocast():
            second = model(input_ids=cont_ids, attention_mask=torch.cat([mask.repeat_interleave(K, 0), cont_m], dim=1),
                           position_ids=lengths[:, None] + step[None], use_cache=False, **{_cache_arg(model): cache})
        logp = torch.log_softmax(second.logits.float(), dim=-1)  # (B*K, L-1, V)
        picked = logp.gather(-1, targets.repeat(B, 1).to(device)[..., None])[..., 0]
        total = total + (picked * cont_m).sum(-1).view(B, K)
    return torch.softmax(total, dim=-1).cpu().numpy()
