"""The Python API: what a notebook needs, in the scikit-learn style the models already follow.

    import emoreg

    corpus = emoreg.load_corpus("deep-example")
    run = emoreg.evaluate("configs/deep-example-tfidf.yaml", out="runs/demo")
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import EmoregError  # noqa: F401 - what every call here raises for bad input


@dataclass
class EvaluationRun:
    """A finished evaluation: its folder, resolved config, metrics and predictions."""

    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    predictions: list[dict[str, Any]]

    def predictions_frame(self):
        """The predictions as a pandas DataFrame: ids, fold, gold, predicted, one ``p_<label>``
        column per label."""
        import pandas as pd

        rows = [{k: v for k, v in r.items() if k != "proba"} | {f"p_{label}": p for label, p in r["proba"].items()}
                for r in self.predictions]
        return pd.DataFrame(rows)


def load_task(name_or_path: str | Path):
    """A built-in task (deep-shame, annomi-client-talk, annomi-therapist) or a task YAML file."""
    from .tasks import load_task as _load

    return _load(name_or_path)


def load_corpus(name_or_path: str | Path, task: str | Any | None = None):
    """A validated corpus: ``annomi``, ``deep-example``, a segments JSONL file or a CSV mapping YAML."""
    from .corpora import load_corpus as _load

    return _load(str(name_or_path), task)


def make_model(name: str, task: Any, prompt: Mapping[str, Any] | Any | None = None, seed: int = 0, **params: Any):
    """A fresh model (``tfidf``, ``embedding``, ``llm``, ``ensemble``, ...); ``prompt`` is a
    ``PromptConfig`` or a mapping of its fields (sources, max_tokens, template)."""
    from .models import make_model as _make
    from .prompts import PromptConfig
    from .tasks import Task

    task = task if isinstance(task, Task) else load_task(task)
    if prompt is None:
        prompt = PromptConfig()
    elif isinstance(prompt, Mapping):
        prompt = PromptConfig(**dict(prompt))
    return _make(name, task, prompt, seed, params)


def load_model(folder: str | Path):
    """A model saved by ``emoreg train`` or ``model.save(folder)``, whatever its kind."""
    from .models import load_model as _load

    return _load(folder)


def evaluate(config: str | Path | Mapping[str, Any], out: str | Path, overrides: Sequence[str] = ()) -> EvaluationRun:
    """Cross-subject evaluation of a config (a YAML path or a mapping of the same keys), into the
    run folder ``out`` (resumed when it holds the same config); ``overrides`` as ``--set``."""
    from .evaluation import load_config
    from .evaluation.config import apply_overrides, config_from_dict
    from .evaluation.runner import evaluate as _evaluate
    from .runs import read_config, read_json, read_jsonl

    if isinstance(config, Mapping):
        data = apply_overrides(dict(config), list(overrides)) if overrides else dict(config)
        resolved = config_from_dict(data, "config")
    else:
        resolved = load_config(config, list(overrides))
    path = Path(_evaluate(resolved, out, command="emoreg.evaluate (Python API)"))
    return EvaluationRun(path=path, config=read_config(path), metrics=read_json(path / "metrics.json"),
                         predictions=read_jsonl(path / "predictions.jsonl"))


def report(runs: Sequence[str | Path | EvaluationRun], out: str | Path, finished_folds: bool = False) -> Path:
    """The report of finished runs (tables, paired tests, figures) into ``out``; its report.md."""
    from .reporting import write_report

    paths = [r.path if isinstance(r, EvaluationRun) else Path(r) for r in runs]
    return write_report(paths, out, finished_folds=finished_folds)
