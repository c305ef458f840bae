"""Information-source ablation: one evaluation per (model, subset of sources), on identical folds.

An ablation config is an evaluation config that may name several models::

    corpus: annomi
    prompt: {sources: [context, history, utterance, nonverbal], max_tokens: 256}
    split: {kind: group-kfold, folds: 5}
    models:
      - {name: tfidf, model: tfidf, params: {text: prompt}}
      - {name: bayesnet, model: bayesnet, params: {meta_variables: {position: context}}}

The grid is every model x every subset (``all`` non-empty subsets, ``leave-one-out``: the full
set and each source left out in turn, or an explicit list). Each cell is an ordinary run folder
``DIR/runs/<model>--<subset>``; a finished cell is never run again, an unfinished one resumes at
its first unfinished fold. A cell a model cannot run (a Bayesian network without a variable for
that subset) is recorded as skipped with the reason. The majority class under the same folds is
the value of the empty subset, which Shapley values need.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import EmoregError, NothingToReadError, Problem, ValidationError
from ..prompts import PROMPT_SOURCES, parse_sources
from ..runs import read_json, write_json
from .config import EvalConfig, apply_overrides, config_from_dict
from .runner import evaluate

EMPTY = "none"


@dataclass(frozen=True)
class Cell:
    model: str
    subset: tuple[str, ...]
    config: EvalConfig

    @property
    def key(self) -> str:
        return f"{self.model}--{subset_name(self.subset)}"


def subset_name(subset: tuple[str, ...]) -> str:
    return "+".join(subset) if subset else EMPTY


def parse_units(spec: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The grid's sources as units, in the prompt's order. ``transcript`` stays one unit (history and
    utterance together); name ``history`` and ``utterance`` to ablate them separately."""
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    if "all" in names:
        names = list(PROMPT_SOURCES)
    for name in names:
        parse_sources(name)  # a clear error for an unknown name
    order = {name: PROMPT_SOURCES.index(parse_sources(name)[0]) for name in names}
    return tuple(sorted(dict.fromkeys(names), key=order.get))


def prompt_sources(units: tuple[str, ...]) -> tuple[str, ...]:
    return parse_sources(units) if units else ()


def make_subsets(units: tuple[str, ...], mode: str) -> list[tuple[str, ...]]:
    """``all``: every non-empty subset; ``leave-one-out``: the full set and each source removed;
    otherwise ``"a,b;c"``: the listed subsets (``all`` in the list means the full set)."""
    if mode == "all":
        return [tuple(c) for r in range(len(units), 0, -1) for c in itertools.combinations(units, r)]
    if mode == "leave-one-out":
        return [units] + [tuple(s for s in units if s != left) for left in units if len(units) > 1]
    subsets = []
    for part in mode.split(";"):
        if part.strip() == "all":
            subsets.append(units)
            continue
        chosen = parse_units(part)
        outside = [s for s in chosen if s not in units]
        if outside:
            raise EmoregError(f"--subsets: {', '.join(outside)} not among the grid's sources ({', '.join(units)})")
        subsets.append(chosen)
    return list(dict.fromkeys(subsets))


def load_grid(path: str | Path, sources: str | None, subsets: str, overrides: list[str] = ()) -> list[Cell]:
    """The cells of an ablation config, each a validated evaluation config."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise EmoregError(f"cannot read ablation config {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ValidationError(str(path), [Problem(str(path), None, "expected a mapping of settings")])
    data = apply_overrides(data, list(overrides)) if overrides else data
    models = data.pop("models", None)
    if models is None:
        models = [{"name": data.get("model", "tfidf"), "model": data.get("model", "tfidf"), "params": data.get("params", {})}]
    problems = []
    if not isinstance(models, list) or not models:
        problems.append(Problem(str(path), "models", "expected a list of {name, model, params}"))
        models = []
    for i, entry in enumerate(models):
        if not isinstance(entry, dict) or not {"name", "model"} <= set(entry) or set(entry) - {"name", "model", "params"}:
            problems.append(Problem(str(path), f"models[{i}]", "expected {name, model, params?}"))
    names = [m.get("name") for m in models if isinstance(m, dict)]
    if len(set(names)) != len(names):
        problems.append(Problem(str(path), "models", f"model names repeat: {names}"))
    if problems:
        raise ValidationError(str(path), problems)
    universe = parse_units(sources if sources else data.get("prompt", {}).get("sources", PROMPT_SOURCES))
    cells = []
    for entry in models:
        for subset in make_subsets(universe, subsets):
            cell = copy.deepcopy(data)
            cell.update(model=entry["model"], params=entry.get("params", {}), name=f"{entry['name']} / {subset_name(subset)}")
            cell["prompt"] = {**cell.get("prompt", {}), "sources": list(prompt_sources(subset))}
            cells.append(Cell(entry["name"], subset, config_from_dict(cell, str(path), base_dir=path.parent)))
    empty = copy.deepcopy(data) | {"model": "majority", "params": {}, "name": "majority / none"}
    empty["prompt"] = {**empty.get("prompt", {}), "sources": list(prompt_sources(universe))}
    cells.append(Cell("majority", (), config_from_dict(empty, str(path), base_dir=path.parent)))
    return cells


def run_grid(cells: list[Cell], out: str | Path, command: str = "") -> dict[str, Any]:
    """Run every cell (skipping finished ones); write and return ``DIR/grid.json``."""
    out = Path(out)
    state_path = out / "grid.json"
    state = read_json(state_path) if state_path.is_file() else {"cells": {}}
    for cell in cells:
        run_dir = out / "runs" / cell.key
        entry = state["cells"].get(cell.key, {})
        if entry.get("status") == "done" and (run_dir / "metrics.json").is_file():
            continue
        try:
            evaluate(cell.config, run_dir, command=command)
            entry = {"status": "done"}
        except NothingToReadError as exc:
            entry = {"status": "skipped", "reason": str(exc)}
        state["cells"][cell.key] = entry | {"model": cell.model, "subset": list(cell.subset), "run": str(run_dir)}
        write_json(state_path, state)
    state["sources"] = list(max((c.subset for c in cells), key=len))
    state["models"] = list(dict.fromkeys(c.model for c in cells if c.subset))
    write_json(state_path, state)
    return state
