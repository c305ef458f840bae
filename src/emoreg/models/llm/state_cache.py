"""The head's state cache on disk: the hidden states entering one decoder layer, per prompt.

One folder per model (its name and, for a folder, its weight files' sizes and times), layer and
dtype, under ``$EMOREG_STATE_CACHE`` (default ~/.cache/emoreg/states). States are written in shards
of a few hundred prompts, each atomically (written under a temporary name, then renamed), so an
interrupted pass keeps every shard it finished and the next run computes only what is missing.
A shard is a pure function of pretrained weights and prompts' own tokens, never of anything fitted.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def state_cache_dir() -> Path:
    """Where states persist between processes: ``$EMOREG_STATE_CACHE``, else ~/.cache/emoreg/states."""
    if os.environ.get("EMOREG_STATE_CACHE"):
        return Path(os.environ["EMOREG_STATE_CACHE"]).expanduser()
    from ...atomic import user_cache

    return user_cache("states")


def model_identity(name: str) -> str:
    """The model's name and, for a folder, the size and time of its weight files: a changed model
    never meets states computed by another."""
    from .loading import resolve

    folder = Path(resolve(name))
    if not folder.is_dir():
        return name
    files = sorted(f for f in folder.iterdir() if f.suffix in (".safetensors", ".bin", ".json"))
    return name + "|" + "|".join(f"{f.name}:{f.stat().st_size}:{int(f.stat().st_mtime)}" for f in files)


def disk_folder(model: str, layer: int, bf16: bool, prefix: str = "same") -> Path:
    """The folder of the states entering ``layer`` of ``model`` in one dtype, made by the frozen
    layers in that dtype (``prefix`` "same") or quantised ("int8": another folder, never mixed)."""
    key = f"{model_identity(model)}|layer {layer}|{'bf16' if bf16 else 'fp32'}"
    if prefix != "same":
        key += f"|prefix {prefix}"
    return state_cache_dir() / hashlib.sha256(key.encode()).hexdigest()[:24]


def load_shards(folder: Path | None) -> dict:
    """Every whole shard of ``folder``, memory-mapped: a state is read from disk when a batch uses
    it, never all at once. A shard cut short by a kill is deleted (its prompts are recomputed)."""
    import torch

    states = {}
    for shard in sorted(folder.glob("shard-*.pt")) if folder is not None and folder.is_dir() else []:
        try:
            states.update(torch.load(shard, weights_only=True, mmap=True))
        except Exception:
            shard.unlink(missing_ok=True)
    return states


def save_shard(folder: Path | None, new: dict, cache: dict) -> None:
    """Write ``new`` as a shard, and put its memory-mapped copies in ``cache`` in place of the
    in-memory ones: the states then live in the page cache, which the kernel can drop and read
    back, rather than in the process's heap (where they would also pin freed activations)."""
    import torch

    if folder is None or not new:
        return
    folder.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(repr(sorted(new)).encode()).hexdigest()[:16]
    tmp = folder / f".shard-{name}.{os.getpid()}.tmp"
    torch.save(new, tmp)
    shard = folder / f"shard-{name}.pt"
    tmp.replace(shard)  # atomic: a shard is whole or absent
    cache.update(torch.load(shard, weights_only=True, mmap=True))
