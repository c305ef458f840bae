"""Run directories: everything needed to trust, reproduce and report one evaluation.

    RUN/config.yaml         the resolved configuration
    RUN/command.txt         the command line that made it
    RUN/environment.json    python, platform and library versions; the numeric path (device, the CPU's
                            bf16 flags, what dtype ``auto`` means here, torch threads)
    RUN/data.json           corpus files with sha256, loader notes, what each source holds
    RUN/folds.json          the test subjects of every fold of the split, and which folds were run
    RUN/folds/fold-NN.jsonl predictions of one finished fold (written atomically)
    RUN/predictions.jsonl   one line per segment: fold, gold, predicted, probabilities
    RUN/metrics.json        pooled metrics with subject-bootstrap CIs, fold means, per class, per subject

Reports read run directories; they never touch a model.
"""

from __future__ import annotations

import json
import platform
import re
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_write_text
from .errors import EmoregError

LIBRARIES = ("emoreg", "numpy", "pandas", "scikit-learn", "scipy", "torch", "transformers", "peft",
             "pgmpy", "sentence-transformers")


@dataclass(frozen=True)
class RunFolder:
    """The files of one run folder by name (the layout above): every reader and writer of a run
    names its files through this, nowhere else."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    config_file = property(lambda self: self.path / "config.yaml")
    command_file = property(lambda self: self.path / "command.txt")
    environment_file = property(lambda self: self.path / "environment.json")
    data_file = property(lambda self: self.path / "data.json")
    folds_file = property(lambda self: self.path / "folds.json")
    predictions_file = property(lambda self: self.path / "predictions.jsonl")
    metrics_file = property(lambda self: self.path / "metrics.json")
    tracking_file = property(lambda self: self.path / "tracking.json")  # --track: the tracking run it logs to


def environment(numerics: dict[str, Any]) -> dict[str, Any]:
    """Python, the platform, the libraries' versions and ``numerics`` (the numeric path, from the
    models that know it: emoreg.models.llm.numerics)."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"python": sys.version.split()[0], "platform": platform.platform(), "libraries": versions,
            "numerics": numerics}


def write_json(path: Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise EmoregError(f"{path} is not UTF-8 text: the file was damaged; delete it (for a fold file, the fold "
                          "runs again) or restore it") from None
    except OSError as exc:
        raise EmoregError(f"cannot read {path}: {exc.strerror or exc}") from None


def read_json(path: Path) -> Any:
    try:
        return json.loads(_text(path))
    except json.JSONDecodeError as exc:
        raise EmoregError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}): the file was damaged or cut short; "
                          "delete it (for a fold file, the fold runs again) or restore it") from None


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    return atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for lineno, line in enumerate(_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise EmoregError(f"{path}:{lineno}: not valid JSON ({exc.msg}): the file was damaged or cut short; "
                              "delete it (for a fold file, the fold runs again) or restore it") from None
    return rows


def prediction_row(segment, proba, labels, **extra: Any) -> dict[str, Any]:
    """One prediction as every writer stores it: ids, the predicted label (the most probable), the
    probability of every label, the gold label when the segment has one, and ``extra`` (e.g. fold)."""
    row = {"segment_id": segment.segment_id, "subject_id": segment.subject_id, "session_id": segment.session_id,
           **extra}
    if segment.label is not None:
        row["gold"] = segment.label
    row["predicted"] = labels[int(proba.argmax())]
    row["proba"] = {label: float(v) for label, v in zip(labels, proba)}
    return row


FOLD_FILE = re.compile(r"fold-(\d+)\.jsonl")
FOLD_MODEL = re.compile(r"fold-(\d+)-model")


def fold_path(out: Path, index: int, suffix: str = ".jsonl") -> Path:
    """A file of fold ``index`` in a run folder: ``.jsonl`` (its predictions; present once the
    fold is finished), ``.meta.json``, ``-model``, ``.checkpoint``."""
    return Path(out) / "folds" / f"fold-{index:02d}{suffix}"


def finished_folds(out: Path) -> list[int]:
    """The folds of a run folder whose predictions are written (``fold-NN.jsonl``, any width)."""
    found = (FOLD_FILE.fullmatch(p.name) for p in (Path(out) / "folds").glob("fold-*.jsonl"))
    return sorted(int(m.group(1)) for m in found if m)


def fold_of_model(model_dir: Path) -> tuple[Path, int] | None:
    """(run folder, fold index) of a fold model an evaluation saved (``RUN/folds/fold-NN-model``
    of a run folder with folds.json), else None."""
    model_dir = Path(model_dir).resolve()
    found = FOLD_MODEL.fullmatch(model_dir.name)
    run = model_dir.parent.parent
    if found is None or not (run / "folds.json").is_file():
        return None
    return run, int(found.group(1))


def fold_tests(run: Path) -> dict[int, set[str]]:
    """The test subjects of every fold of a run's split (run or not), by fold index."""
    return {f["fold"]: set(f["test_subjects"]) for f in read_json(Path(run) / "folds.json")}


def read_config(run: Path) -> dict[str, Any]:
    """A run folder's resolved ``config.yaml``."""
    from .yamlio import read_yaml

    config = read_yaml(Path(run) / "config.yaml", "run config")
    if not isinstance(config, dict):
        raise EmoregError(f"{run}/config.yaml is not a run's config (expected a mapping); was it edited?")
    return config


@dataclass
class Run:
    """A finished run as reports see it."""

    path: Path
    config: dict[str, Any]
    labels: list[str]
    predictions: list[dict[str, Any]]
    metrics: dict[str, Any]
    data: dict[str, Any]

    @property
    def name(self) -> str:
        return self.config.get("name") or self.path.name

    def predictions_frame(self):
        """The predictions as a pandas DataFrame: ids, fold, gold, predicted, one ``p_<label>``
        column per label."""
        import pandas as pd

        rows = [{k: v for k, v in r.items() if k != "proba"} | {f"p_{label}": p for label, p in r["proba"].items()}
                for r in self.predictions]
        return pd.DataFrame(rows)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """gold indices, predicted indices, subject ids, in segment_id order."""
        index = {label: i for i, label in enumerate(self.labels)}
        rows = sorted(self.predictions, key=lambda r: r["segment_id"])
        return (np.array([index[r["gold"]] for r in rows]),
                np.array([index[r["predicted"]] for r in rows]),
                np.array([r["subject_id"] for r in rows]))


def load_run(path: str | Path) -> Run:
    path = Path(path)
    missing = [n for n in ("config.yaml", "predictions.jsonl", "metrics.json", "data.json")
               if not (path / n).is_file()]
    if missing:
        raise EmoregError(f"{path} is not a finished run (missing {', '.join(missing)}); "
                          "run `emoreg evaluate CONFIG --out RUN` to finish it, or report the folds "
                          "finished so far with `emoreg report ... --finished-folds`")
    metrics = read_json(path / "metrics.json")
    if not (isinstance(metrics, dict) and isinstance(metrics.get("labels"), list) and isinstance(metrics.get("pooled"), dict)):
        raise EmoregError(f"{path / 'metrics.json'}: not the metrics `emoreg evaluate` writes (a JSON object with labels "
                          f"and pooled metrics); the file was damaged or edited: recompute it with `emoreg collect {path}`")
    predictions = read_jsonl(path / "predictions.jsonl")
    check_predictions(path / "predictions.jsonl", predictions, metrics["labels"],
                      f"rebuild it from the fold files with `emoreg collect {path}`, or restore it")
    return Run(path=path, config=read_config(path), labels=metrics["labels"], predictions=predictions,
               metrics=metrics, data=read_json(path / "data.json"))


def check_predictions(path: Path, rows: list[Any], labels: list[str], advice: str) -> None:
    """Every row as the evaluation writes it: ids, gold and predicted among the labels, and a finite
    probability from 0 to 1 for every label (a damaged file would print ``nan`` in a report)."""
    import math

    known = set(labels)
    for n, row in enumerate(rows, start=1):
        proba = row.get("proba") if isinstance(row, dict) else None
        problem = None
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in ("segment_id", "subject_id")):
            problem = "expected an object with segment_id and subject_id"
        elif row.get("gold") not in known or row.get("predicted") not in known:
            problem = f"gold {row.get('gold')!r} or predicted {row.get('predicted')!r} is not a label of the run"
        elif not isinstance(proba, dict) or set(proba) != known:
            problem = "proba must give a probability for every label of the run"
        else:
            bad = [k for k, v in proba.items() if isinstance(v, bool) or not isinstance(v, (int, float))
                   or not math.isfinite(v) or not 0 <= v <= 1]
            if bad:
                problem = f"the probability of {bad[0]!r} is {proba[bad[0]]!r}, not a number from 0 to 1"
        if problem:
            raise EmoregError(f"{path}: prediction {n}: {problem}; the file was damaged or edited: {advice}")


def split_of(path: str | Path) -> list[list[str]] | None:
    """The split of the run in ``path``: the test subjects of every fold, whichever folds were run
    (None for a run folder without folds.json)."""
    folds = Path(path) / "folds.json"
    return [f["test_subjects"] for f in read_json(folds)] if folds.is_file() else None
