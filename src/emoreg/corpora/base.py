"""What every corpus adapter returns."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..segments import Segment
from ..tasks import Task


@dataclass
class Corpus:
    """Validated segments plus what a reader of results needs to know about them.

    Attributes:
        name: short name ("annomi", a file name, ...).
        task: the label scheme the segments are labelled in.
        segments: the segments, in file order.
        files: sha256 of every file read, by path (recorded in run directories).
        notes: what the loader did that changes or explains the data (counts of rows skipped
            as non-segments, values it could not parse, how subjects were grouped).
        source_notes: what each information source holds in this corpus.
    """

    name: str
    task: Task
    segments: list[Segment]
    files: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    source_notes: dict[str, str] = field(default_factory=dict)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_dirs() -> list[Path]:
    """Where corpora are looked for: ``$EMOREG_DATA_DIR`` if set, then the user cache."""
    dirs = []
    if os.environ.get("EMOREG_DATA_DIR"):
        dirs.append(Path(os.environ["EMOREG_DATA_DIR"]).expanduser())
    dirs.append(user_cache_dir())
    return dirs


def user_cache_dir() -> Path:
    from ..atomic import user_cache

    return user_cache("data")
