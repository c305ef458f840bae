"""``prefix_dtype: int8``: the frozen layers below the head, the states pass's whole cost, run as
int8 dynamic quantisation (weights int8 per output channel, activations quantised per batch on the
fly; torch's ``quantize_dynamic``), a lever of the speed issue for CPUs without fast bf16.

Kept in float: the MLP's ``down_proj`` (its inputs carry the outlier activations that per-tensor
int8 rounds worst) and the first ``FLOAT_LAYERS`` layers (the embedding's scale is settled there);
the tuned layers and the head are never quantised. A quantised prefix makes different states, so
the state cache keys them apart (``state_cache.disk_folder``): int8 states are never mixed with
float ones. Needs ``dtype: fp32`` (dynamic int8 takes fp32 activations; bf16 is the lever where the
CPU has fast bf16).
"""

from __future__ import annotations

KEEP_FLOAT = ("down_proj",)
FLOAT_LAYERS = 2


def quantise_below(decoder, start: int) -> int:
    """Quantise the Linear layers of decoder layers ``FLOAT_LAYERS`` .. ``start - 1`` in place
    (once: a quantised layer is left as it is); returns how many Linear layers were quantised."""
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    count = 0
    for index in range(FLOAT_LAYERS, start):
        layer = decoder.layers[index]
        spec = {name: per_channel_dynamic_qconfig for name, module in layer.named_modules()
                if type(module) is torch.nn.Linear and not any(k in name for k in KEEP_FLOAT)}
        if spec:
            quantize_dynamic(layer, spec, dtype=torch.qint8, inplace=True)
            count += len(spec)
    return count
