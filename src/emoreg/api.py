"""The Python API: what a notebook needs, in the scikit-learn style the models already follow.

    import emoreg

    corpus = emoreg.load_corpus("deep-example")
    run = emoreg.evaluate("configs/baselines/deep-example-tfidf.yaml", out="runs/demo")
    run.metrics["pooled"]["macro_f1"]          # {"value": ..., "ci95": [...]}
    run.predictions_frame()                    # a pandas DataFrame, one row per test segment
    emoreg.report(["runs/demo", "runs/other"], out="runs/report")
    model = emoreg.make_model("tfidf", corpus.task, text="utterance").fit(corpus.segments)
    model.predict_proba(corpus.segments[:3])   # columns follow model.labels_
    emoreg.load_model("models/demo").predict(corpus.segments)

Everything here is what the command line does, with the same validation and run folders: a run
made here is reported, resumed and compared like one made with ``emoreg evaluate``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import EmoregError  # noqa: F401 - what every call here raises for bad input
from .runs import Run

EvaluationRun = Run  # a finished evaluation: path, config, labels, predictions, metrics, data, predictions_frame()


def _is_path(value: Any) -> bool:
    return isinstance(value, (str, Path))


def load_task(name_or_path: str | Path | Mapping[str, Any]):
    """A built-in task (deep-shame, annomi-client-talk, annomi-therapist, annomi-therapist-fine), a task
    YAML file, or a mapping of a task file's fields (name, labels, ...)."""
    from .tasks import load_task as _load
    from .tasks import task_from_dict

    if isinstance(name_or_path, Mapping):
        return task_from_dict(dict(name_or_path), "load_task(task)")
    if not _is_path(name_or_path):
        raise EmoregError(f"load_task: expected a task name, a task YAML path or a mapping of its fields, found "
                          f"{name_or_path!r}")
    return _load(name_or_path)


def _task(task: Any):
    from .tasks import Task

    return task if isinstance(task, Task) else load_task(task)


def load_corpus(name_or_path: str | Path, task: str | Any | None = None):
    """A validated corpus: ``annomi``, ``deep-example``, a segments JSONL file or a CSV mapping YAML."""
    from .corpora import load_corpus as _load

    if not _is_path(name_or_path):
        raise EmoregError(f"load_corpus: expected a corpus name or the path of a segments or mapping file, found "
                          f"{name_or_path!r}")
    return _load(str(name_or_path), task if task is None or isinstance(task, str) else _task(task))


def make_model(name: str, task: Any, prompt: Mapping[str, Any] | Any | None = None, seed: int = 0, **params: Any):
    """A fresh model (``tfidf``, ``embedding``, ``llm``, ``ensemble``, ...); ``task`` a ``Task``, a
    task name or file, or a mapping of a task's fields; ``prompt`` a ``PromptConfig`` or a mapping
    of its fields (sources, max_tokens, template, ...); ``seed`` a whole number from 0 to 2**32 - 1."""
    from .evaluation.config import prompt_from_dict, seed_problem
    from .models import make_model as _make
    from .prompts import PromptConfig

    if seed_problem(seed):
        raise EmoregError(f"make_model: seed: {seed_problem(seed)}")
    task = _task(task)
    if prompt is None:
        prompt = PromptConfig()
    elif not isinstance(prompt, PromptConfig):
        prompt = prompt_from_dict(dict(prompt) if isinstance(prompt, Mapping) else prompt, "make_model(prompt)")
    return _make(name, task, prompt, seed, params)


def load_model(folder: str | Path):
    """A model saved by ``emoreg train`` or ``model.save(folder)``, whatever its kind."""
    from .models import load_model as _load

    if not _is_path(folder):
        raise EmoregError(f"load_model: expected the path of a model folder, found {folder!r}")
    return _load(folder)


def evaluate(config: str | Path | Mapping[str, Any], out: str | Path, overrides: Sequence[str] = ()) -> EvaluationRun:
    """Cross-subject evaluation of a config (a YAML path or a mapping of the same keys), into the
    run folder ``out`` (resumed when it holds the same config); ``overrides`` as ``--set``."""
    from .evaluation import load_config
    from .evaluation.config import apply_overrides, config_from_dict
    from .evaluation.runner import evaluate as _evaluate
    from .runs import load_run

    if not _is_path(out):
        raise EmoregError(f"evaluate: out must be the path of a run folder, found {out!r}")
    if Path(out).exists() and not Path(out).is_dir():
        raise EmoregError(f"evaluate: out {out} is a file; an evaluation writes a folder there: give a new path")
    overrides = () if overrides is None else overrides
    if isinstance(overrides, str) or not isinstance(overrides, Sequence) or not all(isinstance(o, str) for o in overrides):
        raise EmoregError(f"evaluate: overrides must be a list of KEY=VALUE strings, e.g. ['params.C=0.5'], "
                          f"found {overrides!r}")
    if isinstance(config, Mapping):
        data = apply_overrides(dict(config), list(overrides)) if overrides else dict(config)
        resolved = config_from_dict(data, "config")
    elif _is_path(config):
        resolved = load_config(config, list(overrides))
    else:
        raise EmoregError(f"evaluate: config must be the path of a YAML config or a mapping of its keys, found "
                          f"{config!r}")
    return load_run(_evaluate(resolved, out, command="emoreg.evaluate (Python API)"))


def report(runs: Sequence[str | Path | EvaluationRun], out: str | Path, finished_folds: bool = False) -> Path:
    """The report of finished runs (tables, paired tests, figures) into ``out``; its report.md."""
    from .reporting import write_report

    if _is_path(runs) or not isinstance(runs, Sequence) or not runs:
        raise EmoregError(f"report: expected a list of one or more run folders (or EvaluationRun objects), found "
                          f"{runs!r}")
    wrong = [r for r in runs if not (_is_path(r) or isinstance(r, EvaluationRun))]
    if wrong:
        raise EmoregError(f"report: {wrong[0]!r} is neither a run folder's path nor an EvaluationRun")
    paths = [r.path if isinstance(r, EvaluationRun) else Path(r) for r in runs]
    return write_report(paths, out, finished_folds=finished_folds)
