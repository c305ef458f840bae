"""Cutting a causal LM's decoder: the stack itself, the first ``n`` layers kept (``layers``),
the first tuned layer (``tune_layers``), a forward pass over a slice of the layers, and hooks that
capture the states entering some layers (ending the pass at the deepest, or not, as an exported
graph needs). Used by the head, the states pass (torch and OpenVINO), LoRA and the features model."""

from __future__ import annotations

from contextlib import contextmanager

from ...errors import EmoregError


def decoder_of(model):
    """The decoder stack (embeddings, ``layers``, final norm) of a causal LM, PEFT-wrapped or not."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = getattr(base, "model", None)
    if decoder is None or not hasattr(decoder, "layers"):
        raise EmoregError(f"llm: head classify needs a decoder with a `layers` list; {type(base).__name__} has none")
    return base, decoder


def truncate(model, n: int) -> None:
    """Keep only the first ``n`` decoder layers (``layers: n``); the final norm and the head follow
    layer ``n``. The states entering any kept layer are those of the whole model, so the state
    cache stays valid."""
    _, decoder = decoder_of(model)
    total = len(decoder.layers)
    if not 1 <= n <= total:
        raise EmoregError(f"llm: layers must be between 1 and {total} (this model's layers), got {n}")
    decoder.layers = decoder.layers[:n]
    model.config.num_hidden_layers = n
    if isinstance(getattr(model.config, "layer_types", None), list):
        model.config.layer_types = model.config.layer_types[:n]


def first_tuned(model, tune_layers: int | None) -> int:
    """Index of the first tuned layer for ``tune_layers`` (None: every layer, index 0)."""
    n = len(decoder_of(model)[1].layers)
    if tune_layers is None:
        return 0
    if not 1 <= tune_layers <= n:
        raise EmoregError(f"llm: tune_layers must be between 1 and {n} (this model's layers), got {tune_layers}")
    return n - tune_layers


@contextmanager
def only_layers(decoder, layers, first: int):
    """Run the decoder over ``layers`` alone, the first of them the model's layer ``first``. Where the
    config gives each layer a type (Gemma 3: local or global attention, each with its own mask and
    rotary table; the decoder looks them up by position in its list), the types follow the layers."""
    import torch

    saved = decoder.layers
    config = getattr(decoder, "config", None)
    types = getattr(config, "layer_types", None)
    decoder.layers = torch.nn.ModuleList(layers)
    if isinstance(types, list):
        config.layer_types = types[first:first + len(layers)]
    try:
        yield
    finally:
        decoder.layers = saved
        if isinstance(types, list):
            config.layer_types = types


class StopPass(Exception):
    """Raised by a hook to end a forward pass once the states it needs are captured."""


def capture_hooks(layers, wanted: list[int], captured: dict, stop: bool = True) -> list:
    """Hooks on ``layers`` that put the states entering each of ``wanted`` (sorted) into ``captured``
    and, with ``stop``, end the pass at the deepest (``StopPass``: nothing above it is needed; an
    exported graph must run to its end instead); remove them after."""

    def capture(layer):
        def hook(module, args, kwargs):
            captured[layer] = kwargs.get("hidden_states", args[0] if args else None)
            if stop and layer == wanted[-1]:
                raise StopPass

        return hook

    return [layers[layer].register_forward_pre_hook(capture(layer), with_kwargs=True) for layer in wanted]


def run_until_stopped(decoder, **inputs) -> None:
    try:
        decoder(**inputs)
    except StopPass:
        pass
