"""Corpus adapters: every corpus becomes a list of validated segments.

``load_corpus(spec, task)`` accepts ``annomi``, ``deep-example``, a JSONL segment file or a
CSV mapping (YAML; see ``csv_import``).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import EmoregError
from ..tasks import Task, load_task
from .annomi import load_annomi
from .base import Corpus
from .csv_import import load_csv_corpus
from .deep import EXAMPLE_NAME, load_example, load_jsonl

DEFAULT_TASKS = {"annomi": "annomi-client-talk", EXAMPLE_NAME: "deep-shame"}

__all__ = ["Corpus", "load_corpus", "resolve_task", "DEFAULT_TASKS"]


def resolve_task(corpus: str, task: str | Task | None) -> Task:
    """The task given, else the corpus's default, else a clear error."""
    if isinstance(task, Task):
        return task
    if task is None:
        if corpus not in DEFAULT_TASKS:
            raise EmoregError(f"name the task of {corpus}: a built-in task such as deep-shame, or a task YAML "
                              "file (--task on the command line, task= in Python, task: in a config)")
        task = DEFAULT_TASKS[corpus]
    return load_task(task)


def load_corpus(spec: str, task: str | Task | None = None) -> Corpus:
    """Load a corpus by name or path, validated against ``task``."""
    resolved = resolve_task(spec, task)
    if spec == "annomi":
        return load_annomi(resolved)
    if spec == EXAMPLE_NAME:
        return load_example(resolved)
    path = Path(spec)
    suffix = path.suffix.lower()
    if not path.exists():
        raise EmoregError(f"corpus {spec!r} is neither a known corpus (annomi, {EXAMPLE_NAME}) "
                          "nor an existing file")
    if suffix == ".jsonl":
        return load_jsonl(path, resolved)
    if suffix in {".yaml", ".yml"}:
        return load_csv_corpus(path, resolved)
    if suffix == ".csv":
        raise EmoregError(f"{spec}: a CSV needs a column mapping; write a YAML file that names its "
                          "columns (see examples/csv/interviews.yaml) and pass that as --corpus")
    raise EmoregError(f"{spec}: unknown corpus file type {suffix!r}; use .jsonl segments or a .yaml CSV mapping")
