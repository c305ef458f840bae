"""The frozen layers below the head, the states pass's whole cost, run otherwise than as torch in
the model's dtype: two levers of the speed issue.

``prefix_dtype: int8`` (torch): dynamic int8 quantisation (weights int8 per output channel,
activations quantised per batch on the fly; torch's ``quantize_dynamic``), for CPUs without fast
bf16. Kept in float: the MLP's ``down_proj`` (its inputs carry the outlier activations that
per-tensor int8 rounds worst) and the first ``FLOAT_LAYERS`` layers (the embedding's scale is
settled there); the tuned layers and the head are never quantised. Needs ``dtype: fp32`` (dynamic
int8 takes fp32 activations; bf16 is the lever where the CPU has fast bf16).

``prefix_engine: openvino`` (``OpenVinoPrefix``): the same layers converted to OpenVINO and compiled
for the CPU, in the model's dtype or (with ``prefix_dtype: int8``) with NNCF's int8 weights.

Either makes different states, so the state cache keys them apart (``states.prefix_name``): int8 or
OpenVINO states are never mixed with torch's float ones, nor with each other.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from types import SimpleNamespace

from ...errors import EmoregError

KEEP_FLOAT = ("down_proj",)
FLOAT_LAYERS = 2


def quantise_below(decoder, start: int) -> int:
    """Quantise the Linear layers of decoder layers ``FLOAT_LAYERS`` .. ``start - 1`` in place
    (once: a quantised layer is left as it is); returns how many Linear layers were quantised. The
    states pass quantises copies (``int8_layers``); the benchmark, a model of its own."""
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


def int8_layers(decoder, start: int) -> list:
    """The decoder's layers below ``start`` for an int8 states pass: copies of layers
    ``FLOAT_LAYERS`` .. ``start - 1`` quantised (``quantise_below``), the first ones the model's own.
    The model itself stays float, so a later pass with another prefix (the same classifier with its
    ``prefix_dtype`` or ``prefix_engine`` changed) never runs, nor caches as float, int8 layers."""
    import copy

    import torch

    layers = [copy.deepcopy(layer) if index >= FLOAT_LAYERS else layer
              for index, layer in enumerate(decoder.layers[:start])]
    quantise_below(SimpleNamespace(layers=torch.nn.ModuleList(layers)), start)
    return layers


@contextmanager
def layers_below(decoder, layers: list):
    """Run the decoder with ``layers`` in place of its first ``len(layers)`` layers."""
    import torch

    saved = decoder.layers
    decoder.layers = torch.nn.ModuleList(list(layers) + list(saved[len(layers):]))
    try:
        yield
    finally:
        decoder.layers = saved


class OpenVinoPrefix:
    """``prefix_engine: openvino``: the frozen layers up to the deepest wanted one, converted once
    from the loaded torch model (``openvino.convert_model``) and compiled for the CPU, with weights
    of their own: in the model's dtype (bf16 where the model runs bf16, else fp32), or with int8 weights
    (``prefix_dtype: int8``: NNCF's int8 weight compression, the same layers kept in float as the
    torch path; the CPU plugin quantises activations per token on the fly). Called with a padded
    batch, it returns the hidden states entering each wanted layer, as the torch pass's hooks do."""

    def __init__(self, decoder, wanted: list[int], bf16: bool, int8: bool, threads: int, compress=None):
        import torch

        try:
            import openvino as ov
        except ImportError:
            raise EmoregError("llm: prefix_engine openvino needs OpenVINO: pip install 'emoreg[openvino]' "
                              "(or set prefix_engine: torch)") from None
        self.wanted = sorted(wanted)
        if self.wanted[-1] < 1:
            raise EmoregError("llm: prefix_engine openvino runs the frozen layers, and layer 0 has none below it; "
                              "tune fewer layers or set prefix_engine: torch")
        example = (torch.ones((2, 8), dtype=torch.long), torch.ones((2, 8), dtype=torch.long))
        with _upto(decoder, self.wanted) as module, warnings.catch_warnings():
            # the tracer warns of branches it freezes; those that depend on the width (the padding,
            # the causal mask) stay general (tested with batches of many widths), and the one that
            # tests for a single-token query never fires: a prompt is its template and more
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            model = ov.convert_model(module, example_input=example)
        if compress is not None:  # another compression of the converted model (benchmarks/llm_speed.py)
            model = compress(model)
        elif int8:
            model = _compress_int8(model)
        config = {"INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32", "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_NUM_THREADS": threads}
        self.request = ov.Core().compile_model(model, "CPU", config).create_infer_request()

    def __call__(self, ids, mask) -> dict:
        import torch

        outputs = self.request.infer({0: ids.numpy(), 1: mask.numpy()}, share_outputs=False)
        return {layer: torch.from_numpy(outputs[i]) for i, layer in enumerate(self.wanted)}


@contextmanager
def _upto(decoder, wanted: list[int]):
    """The decoder as a module returning the states entering each of ``wanted`` layers: the layers
    below the deepest kept, its final norm set aside (the last state is the deepest layer's input)."""
    import torch

    from .cut import capture_hooks, only_layers

    captured: dict = {}

    class Upto(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.decoder = decoder

        def forward(self, input_ids, attention_mask):
            captured.clear()
            last = self.decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
            return tuple(captured[layer].float() for layer in wanted[:-1]) + (last.float(),)

    hooks = capture_hooks(decoder.layers, wanted[:-1], captured, stop=False)
    norm = decoder.norm
    try:
        with only_layers(decoder, list(decoder.layers[:wanted[-1]]), 0):
            decoder.norm = torch.nn.Identity()
            yield Upto().eval()
    finally:
        decoder.norm = norm
        for hook in hooks:
            hook.remove()


def _compress_int8(model):
    """int8 weights (per output channel, asymmetric) for the Linear layers, ``KEEP_FLOAT`` and the
    first ``FLOAT_LAYERS`` layers left in float, as the torch path leaves them; NNCF's int8 mode
    also stores the embedding table in int8 (per row)."""
    try:
        import nncf
    except ImportError:
        raise EmoregError("llm: prefix_engine openvino with prefix_dtype int8 needs NNCF: "
                          "pip install 'emoreg[openvino]'") from None
    keep = [f".*{name}.*" for name in KEEP_FLOAT] + [rf".*layers\.{i}\..*" for i in range(FLOAT_LAYERS)]
    return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM,
                                 ignored_scope=nncf.IgnoredScope(patterns=keep, validate=False))
