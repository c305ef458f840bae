"""The hidden states entering a layer, computed once per prompt and cached.

The layers below the first tuned one are frozen, so the hidden states entering it depend on the
prompt's tokens alone: they are computed once per prompt, without gradients, and cached (in memory,
per process, under an explicit key: the model, the layer, the dtype, whether the disk cache is on,
and what ran the frozen layers: ``prefix_engine`` and ``prefix_dtype``). Every epoch after the
first, every fold after the first in the same process, and the scoring of the test prompts reuse
them; an epoch runs only the tuned layers, forward and backward. The cache holds a pure function of pretrained weights
and a prompt's own tokens, never anything fitted, so sharing it between folds cannot leak a test
subject into training. With ``state_cache: true`` (the default) it also persists on disk
(``$EMOREG_STATE_CACHE``, default ~/.cache/emoreg/states; one folder per model, layer, dtype and
prefix engine, shards written atomically, ``state_cache.py``), so a second run, or a run resumed
after a kill, skips the prompts whose states it already has; the states in memory are then the
shards' memory-mapped copies (page cache the kernel can drop and read back, not the process's heap).
"""

from __future__ import annotations

import functools
import inspect
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ... import heap
from ...errors import EmoregError
from ...progress import progress
from .cut import capture_hooks, decoder_of, run_until_stopped
from .prefix import OpenVinoPrefix, int8_layers, layers_below
from .state_cache import disk_folder, load_shards, save_shard
from .tokens import padded

if TYPE_CHECKING:  # pragma: no cover
    from .model import LlmClassifier

# batches (of the states pass, training and scoring) between returns of the heap's free pages:
# batches of many lengths fragment it (BENCHMARKS.md, "Memory of one fold")
TRIM_EVERY = 5
MIN_SHARED = 8  # tokens: a shorter prefix common to a batch's prompts is not worth a pass of its own
MAX_CACHED = 20_000  # prompts kept (~2.7 GB in bf16 at ~120 tokens); past it, states are computed and dropped


@dataclass(frozen=True)
class StateKey:
    """What the cached states are a function of, besides a prompt's tokens."""

    model: str
    layer: int
    bf16: bool
    on_disk: bool
    prefix: str


@dataclass
class StateCache:
    """The states of one key at a time, in memory (and memory-mapped from their disk shards)."""

    key: StateKey | None = None
    states: dict = field(default_factory=dict)
    folder: Path | None = None

    def use(self, key: StateKey, folder: Path | None) -> dict:
        """The states of ``key``, read from ``folder``'s shards when the key changes."""
        if self.key != key:
            self.key, self.states, self.folder = key, load_shards(folder), folder
        return self.states

    def forget(self) -> None:
        """Drop every state held in memory (as a new process would start)."""
        self.key, self.states, self.folder = None, {}, None


CACHE = StateCache()  # one per process: shared by every fold and seed the process runs


def shared_prefix(batch: list) -> int:
    """How many leading tokens every prompt of ``batch`` has in common (each keeping at least one
    of its own): the system message and the instruction, in every prompt of a task."""
    return _common(batch[0], batch[1:], min(map(len, batch)) - 1) if len(batch) > 1 else 0


def _common(first, others: list, width: int) -> int:
    for at in range(width):
        if any(row[at] != first[at] for row in others):
            return at
    return width


@functools.cache
def _cache_argument(decoder_class) -> str:
    """transformers 5 names the argument ``cache`` (``past_key_values``, deprecated, goes in 5.40); 4.x
    ``past_key_values``. Read once per decoder class, not per batch."""
    return "cache" if "cache" in inspect.signature(decoder_class.forward).parameters else "past_key_values"


def _torch_pass(decoder, batch: list, ids, mask, device, captured: dict, kept: dict) -> int:
    """The frozen layers of torch over one batch, its hooks filling ``captured`` with the states
    entering each wanted layer (batch, width, hidden). A prefix of ``MIN_SHARED`` tokens or more that
    every prompt of the batch begins with runs once; the rest of each prompt attends to its keys and
    values, repeated over the batch. The states are the same as a whole pass's (rounding apart: the
    matmuls have other shapes), at ~1.27x fewer tokens run for AnnoMI's prompts, whose 43 tokens of
    system message and instruction are in every prompt (BENCHMARKS.md).

    ``kept`` (per classifier, prefix and layers): ``kept["last"]``, the last prefix run (its ids, keys
    and values, and states; or the ids alone of a prompt that ran whole), reused by the next batch
    that shares exactly it, and by a prompt scored alone that begins with it (the live service's
    case: a prompt alone shares what it has in common with the one before). Returns the tokens not
    run."""
    import copy

    import torch
    from transformers import DynamicCache

    known, saved, head = kept.get("last", ((), None, None))  # one read: the service may score from two threads
    if (saved is not None and len(known) >= MIN_SHARED
            and all(len(row) > len(known) and tuple(row[:len(known)]) == known for row in batch)
            and (len(batch) == 1 or shared_prefix(batch) == len(known))):
        common, past, fresh = len(known), copy.deepcopy(saved), False
    else:
        common = shared_prefix(batch) if len(batch) > 1 else _common(batch[0], [known], min(len(known), len(batch[0]) - 1))
        if common < MIN_SHARED:
            if len(batch) == 1:  # the next prompt alone may share a prefix with this one
                kept["last"] = (tuple(batch[0]), None, None)
            run_until_stopped(decoder, input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False)
            return 0
        past, fresh = DynamicCache(config=decoder.config), True
    name = _cache_argument(type(decoder))
    if fresh:
        run_until_stopped(decoder, input_ids=ids[:1, :common].to(device), use_cache=True, **{name: past})
        head = dict(captured)
        kept["last"] = (tuple(batch[0][:common]), copy.deepcopy(past), head)
    captured.clear()
    past.batch_repeat_interleave(len(batch))
    # the mask covers the prefix and the rest (padding on the right: the prefix is real in every row)
    run_until_stopped(decoder, input_ids=ids[:, common:].to(device), attention_mask=mask.to(device),
                      use_cache=True, **{name: past})
    for layer, states in head.items():
        captured[layer] = torch.cat([states.expand(len(batch), -1, -1), captured[layer]], dim=1)
    return common * (len(batch) - fresh)


def cache_folder(clf: LlmClassifier, layer: int):
    if not clf.settings.model.state_cache:
        return None
    return disk_folder(str(clf.settings.model.model), layer, clf.bf16_, prefix=prefix_name(clf))


def prefix_name(clf: LlmClassifier) -> str:
    """What made the states besides the model and dtype: "same" (torch, the model's dtype), "int8"
    (torch's dynamic int8), "openvino" or "openvino-int8": each keys a cache of its own."""
    model = clf.settings.model
    if model.prefix_engine == "torch":
        return model.prefix_dtype
    return model.prefix_engine + ("-int8" if model.prefix_dtype == "int8" else "")


def openvino_prefix(clf: LlmClassifier, decoder, wanted: list[int], int8: bool) -> OpenVinoPrefix:
    """The frozen layers compiled by OpenVINO for ``wanted``, converted once per classifier, set of
    layers, dtype and weights (the live service converts at its first prompt and reuses it; a
    classifier whose ``prefix_dtype`` changes gets another engine, never the float one's states)."""
    import torch

    if clf.device_.type != "cpu":
        raise EmoregError(f"llm: prefix_engine openvino runs on the CPU; this model is on {clf.device_.type}: "
                          "set prefix_engine: torch")
    engines = clf.__dict__.setdefault("prefix_engines_", {})
    key = ("openvino", tuple(wanted), clf.bf16_, int8)
    if key not in engines:
        engines[key] = OpenVinoPrefix(decoder, wanted, clf.bf16_, int8, torch.get_num_threads())
    return engines[key]


def entering_states(clf: LlmClassifier, prefixes: list[list[int]], start: int, also=()) -> list:
    """The hidden states entering layer ``start`` for every prompt, one (tokens, hidden) tensor
    each, from the cache where a prompt was seen before, else computed without gradients.

    ``also``: more layers whose entering states the same pass keeps on disk (``state_layers``):
    the pass runs to the deepest of them once, and a later run reading any of those layers finds
    its states cached (a depth sweep costs one pass, not one per depth)."""
    import torch

    key = StateKey(str(clf.settings.model.model), start, clf.bf16_, bool(clf.settings.model.state_cache),
                   prefix_name(clf))
    cache = CACHE.use(key, cache_folder(clf, start))
    extra = {layer: cache_folder(clf, layer) for layer in sorted(set(also) - {start})}
    extra_keys = {layer: set(load_shards(folder)) for layer, folder in extra.items()}
    todo = sorted({tuple(p) for p in prefixes
                   if tuple(p) not in cache or any(tuple(p) not in k for k in extra_keys.values())}, key=len)
    _, decoder = decoder_of(clf.model_)
    wanted = sorted({start, *extra})
    if wanted[-1] >= len(decoder.layers):
        raise EmoregError(f"llm: state_layers {sorted(extra)} must be below this model's {len(decoder.layers)} "
                          f"kept layers (layers)")
    int8 = clf.settings.model.prefix_dtype == "int8"  # the frozen layers below the head in int8 (``prefix``)
    openvino = clf.settings.model.prefix_engine == "openvino"
    if todo and int8 and not openvino and wanted[-1] != start:
        raise EmoregError("llm: with prefix_dtype int8 the states pass ends at the first tuned layer; "
                          "state_layers must be below it")
    engine, below, layers = None, nullcontext(), list(decoder.layers)
    if todo and openvino:
        engine = openvino_prefix(clf, decoder, wanted, int8)
    elif todo and int8:  # int8 copies of the layers below the head; the model's own stay float
        engines = clf.__dict__.setdefault("prefix_engines_", {})
        if ("int8", start) not in engines:
            engines["int8", start] = int8_layers(decoder, start)
        below = layers_below(decoder, engines["int8", start])
        layers = engines["int8", start] + layers[start:]
    captured = {}

    hooks = [] if engine is not None else capture_hooks(layers, wanted, captured)
    size = clf.settings.model.score_batch
    stored = torch.bfloat16 if clf.bf16_ else torch.float32
    new, overflow = {}, {}
    new_extra = {layer: {} for layer in extra}
    tick, shared = heap.trimmer(TRIM_EVERY), 0
    kept = clf.__dict__.setdefault("shared_prefixes_", {}).setdefault((prefix_name(clf), tuple(wanted), clf.bf16_), {})
    desc = f"states entering layer{'s' if extra else ''} {', '.join(map(str, wanted))}"
    try:
        with torch.inference_mode(), below:
            for at in progress(range(0, len(todo), size), desc=desc, unit="batch", leave=False):
                batch = todo[at:at + size]
                ids, mask = padded([list(b) for b in batch], clf.pad_id_)
                if engine is not None:
                    captured.update(engine(ids, mask))
                else:
                    with clf._autocast():
                        shared += _torch_pass(decoder, batch, ids, mask, clf.device_, captured, kept)
                hidden = captured.pop(start)
                for b, tokens in enumerate(batch):
                    state = hidden[b, :len(tokens)].to("cpu", stored).clone()
                    if len(cache) < MAX_CACHED:  # a long-lived process (the service) stays bounded
                        new[tokens] = cache[tokens] = state
                    else:
                        overflow[tokens] = state
                    for layer, more in new_extra.items():
                        if tokens not in extra_keys[layer]:
                            more[tokens] = captured[layer][b, :len(tokens)].to("cpu", stored).clone()
                captured.clear()
                if len(new) >= 512:  # an interrupted pass keeps what it computed
                    save_shard(CACHE.folder, new, cache)
                    new = {}
                for layer, more in new_extra.items():
                    if len(more) >= 512:
                        save_shard(extra[layer], more, {})
                        more.clear()
                tick()
    finally:
        for hook in hooks:
            hook.remove()
        save_shard(CACHE.folder, new, cache)
        for layer, more in new_extra.items():
            save_shard(extra[layer], more, {})
        del new, new_extra  # their states are on disk now, memory-mapped where the cache holds them
        if len(todo) > TRIM_EVERY * size:  # a long pass: its activations, freed among the states, go back
            heap.release()
        elif todo:  # a few prompts (the live service's one): a full garbage collection would cost more
            heap.trim()  # than their pass (236 ms against ~200 ms on a 2-core CPU, BENCHMARKS.md)
    clf.fit_report.states_computed += len(todo)
    clf.fit_report.states_tokens += sum(map(len, todo))
    clf.fit_report.states_tokens_shared += shared
    clf.fit_report.states_reused += len(prefixes) - len(todo)
    return [cache[tuple(p)] if tuple(p) in cache else overflow[tuple(p)] for p in prefixes]
