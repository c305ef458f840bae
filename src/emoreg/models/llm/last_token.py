"""The top decoder layer at the last prompt token only: what ``head: classify`` reads, for a fraction
of the layer's cost.

The label head reads one position, the prompt's last token. Every layer below the top one must
still run at every position (the layers above attend to all of them), but the top layer's output
is read at that one position only: its queries, attention output, residual and MLP are needed
there alone, and only its keys and values at every position. For SmolLM2-135M the key and value
projections are 6% of a layer's weights (grouped-query attention, 3 of 9 heads), so the top layer
costs ~6% of a full one, forward and backward. The result is the same function of the same
weights (tested against the whole layer, fp32 and bf16, values and gradients), so it needs no
switch: it is used wherever the layer is a known Llama or Qwen2 layer (without a sliding window) or
a Gemma 3 layer (its query/key norms, its norms around attention and MLP, its local or global
rotary positions and its sliding window: the study's second model family), and the whole layer runs
otherwise.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

# layer classes whose forward is exactly: x + attn(norm1(x)); h + mlp(norm2(h)), rotary positions,
# grouped-query attention with no extra norms, no sliding window, no soft-capping
SUPPORTED = ("LlamaDecoderLayer", "Qwen2DecoderLayer")  # Qwen2: biased q/k/v projections, same forward
# Gemma 3: x + norm2(attn(norm1(x))); h + norm4(mlp(norm3(h))), RMS norms on queries and keys, a
# rotary table per layer type (local or global), a sliding window on the local layers
GEMMA = ("Gemma3DecoderLayer",)
GEMMA_NORMS = ("pre_feedforward_layernorm", "post_feedforward_layernorm")


def _gemma(layer) -> bool:
    return type(layer).__name__ in GEMMA


def supported(decoder, layer) -> bool:
    attn = getattr(layer, "self_attn", None)
    if _gemma(layer):
        return (hasattr(decoder, "rotary_emb") and getattr(attn, "attn_logit_softcapping", None) is None
                and getattr(attn, "is_causal", False)  # bidirectional Gemma (an encoder use) runs whole
                and all(hasattr(attn, k) for k in ("q_norm", "k_norm", "layer_type"))
                and all(hasattr(layer, k) for k in GEMMA_NORMS) and _projections(layer))
    return (type(layer).__name__ in SUPPORTED and hasattr(decoder, "rotary_emb")
            and getattr(attn, "sliding_window", None) is None  # Qwen2 with use_sliding_window: the whole layer
            and _projections(layer))


def _projections(layer) -> bool:
    attn = getattr(layer, "self_attn", None)
    return (all(hasattr(attn, k) for k in ("q_proj", "k_proj", "v_proj", "o_proj", "head_dim", "scaling"))
            and all(hasattr(layer, k) for k in ("input_layernorm", "post_attention_layernorm", "mlp")))


@contextmanager
def no_final_norm(decoder):
    """The decoder's output before its final norm (the norm is applied after the top layer)."""
    import torch

    saved = decoder.norm
    decoder.norm = torch.nn.Identity()
    try:
        yield
    finally:
        decoder.norm = saved


def top_layer_at_last(decoder, layer, hidden, mask):
    """The output of ``layer`` at each row's last real position, (batch, hidden), for right-padded
    ``hidden`` (batch, tokens, hidden) with ``mask`` (batch, tokens) marking the real tokens."""
    import torch

    module = sys.modules[type(layer).__module__]
    attn = layer.self_attn
    batch, length, _ = hidden.shape
    rows = torch.arange(batch, device=hidden.device)
    last = mask.sum(-1) - 1
    positions = torch.arange(length, device=hidden.device)[None]
    gemma = _gemma(layer)
    # (1, tokens, head_dim); Gemma 3 keeps one table per layer type (local and global rotary bases)
    cos, sin = decoder.rotary_emb(hidden, positions, attn.layer_type) if gemma else decoder.rotary_emb(hidden, positions)
    normed = layer.input_layernorm(hidden)
    query = attn.q_proj(normed[rows, last][:, None]).view(batch, 1, -1, attn.head_dim).transpose(1, 2)
    key = attn.k_proj(normed).view(batch, length, -1, attn.head_dim).transpose(1, 2)
    value = attn.v_proj(normed).view(batch, length, -1, attn.head_dim).transpose(1, 2)
    if gemma:
        query, key = attn.q_norm(query), attn.k_norm(key)
    query, _ = module.apply_rotary_pos_emb(query, query, cos[0, last][:, None], sin[0, last][:, None])
    key, _ = module.apply_rotary_pos_emb(key, key, cos, sin)
    groups = query.shape[1] // key.shape[1]
    key, value = module.repeat_kv(key, groups), module.repeat_kv(value, groups)
    seen = mask[:, None, None, :].bool()  # right padding: every real token is at or before the last
    window = getattr(attn, "sliding_window", None) if gemma else None
    if window is not None:  # a local layer: the last token sees the `window` positions up to itself
        seen = seen & (positions[:, None, None, :] > (last - window)[:, None, None, None])
    dropout = attn.attention_dropout if attn.training else 0.0
    out = torch.nn.functional.scaled_dot_product_attention(query, key.to(query.dtype), value.to(query.dtype),
                                                           attn_mask=seen, dropout_p=dropout,
                                                           scale=attn.scaling)
    out = attn.o_proj(out.transpose(1, 2).reshape(batch, 1, -1))
    if gemma:
        h = hidden[rows, last][:, None] + layer.post_attention_layernorm(out)
        h = h + layer.post_feedforward_layernorm(layer.mlp(layer.pre_feedforward_layernorm(h)))
        return h[:, 0]
    h = hidden[rows, last][:, None] + out
    h = h + layer.mlp(layer.post_attention_layernorm(h))
    return h[:, 0]
