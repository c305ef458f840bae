"""A model folder's parts recorded together: when a fold's model or a trained model is saved, a
sha256 over every file of the folder (its weights, and model.json's labels, parameters and
settings) goes into model.json as ``digest``; loading recomputes it and refuses a folder whose
parts disagree (a reversed label order, a changed ``layers``, a swapped weights file), which would
otherwise relabel or change every prediction without a word. ``MODEL_CARD.md`` is documentation
and left out. A digest guards against a folder changed by accident or by hand; it is not a
signature: whoever can write a folder can change what it predicts, so load only folders you trust
(nothing in one runs code: docs/python.md, "What is trusted")."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..atomic import atomic_write_text
from ..errors import EmoregError

SKIPPED = ("MODEL_CARD.md",)


def _digest(folder: Path, spec: dict) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({k: v for k, v in spec.items() if k != "digest"}, sort_keys=True).encode())
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if relative == "model.json" or relative in SKIPPED:
            continue
        digest.update(relative.encode() + b"\0")
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def seal(folder: str | Path) -> Path:
    """Record the digest of a saved model folder in its model.json."""
    folder = Path(folder)
    spec = json.loads((folder / "model.json").read_text())
    spec["digest"] = _digest(folder, spec)
    atomic_write_text(folder / "model.json", json.dumps(spec, indent=2) + "\n")
    return folder


def verify(folder: str | Path, spec: dict) -> None:
    """Refuse a sealed folder whose parts no longer match its digest (an unsealed one, saved by an
    earlier emoreg or by ``model.save`` alone, loads as before)."""
    folder = Path(folder)
    if "digest" in spec and _digest(folder, spec) != spec["digest"]:
        raise EmoregError(f"{folder}: its parts disagree with the digest recorded when it was saved (model.json or "
                          "a weights file was changed since); it would predict other labels or probabilities than "
                          "the model that was evaluated. Restore the folder, or train it again with `emoreg train`")
