"""DEEP-style corpora: the canonical JSONL segment file, and the shipped illustrative example.

A researcher with the study's corpus (or any corpus of labelled behaviour segments) converts it
to the JSONL format of ``emoreg.segments``. ``deep-example`` is a small file in that format,
invented for illustration (three subjects, all five sources, all seven labels): it shows the
format and exercises the machinery; it is not data from the DEEP study and results on it mean
nothing.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..segment_files import read_segments
from ..tasks import DEEP_SHAME, Task
from .base import Corpus, sha256_file

EXAMPLE_NAME = "deep-example"


def example_path() -> Path:
    return Path(str(resources.files("emoreg") / "data" / "deep_example.jsonl"))


def load_jsonl(path: str | Path, task: Task) -> Corpus:
    path = Path(path)
    segments = read_segments(path, task)
    return Corpus(name=path.stem, task=task, segments=segments, files={str(path): sha256_file(path)})


def load_example(task: Task = DEEP_SHAME) -> Corpus:
    corpus = load_jsonl(example_path(), task)
    corpus.name = EXAMPLE_NAME
    corpus.notes.append("invented for illustration: not data of the DEEP study; results on it mean nothing")
    return corpus
