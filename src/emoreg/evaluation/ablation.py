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

from ..errors import EmoregError, NothingToReadError, Problem, ValidationError
from ..prompts import PROMPT_SOURCES, parse_sources
from ..runs import RunFolder, fold_path, read_json, write_json
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
    from ..yamlio import read_yaml

    data = read_yaml(path, "ablation config")
    if not isinstance(data, dict):
        raise ValidationError(str(path), [Problem(str(path), None, "expected a mapping of settings")])
    from .config import resolve_paths

    data = resolve_paths(data, path.parent)  # the file's paths against its folder; --set against the cwd
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
            cells.append(Cell(entry["name"], subset, config_from_dict(cell, str(path))))
    empty = copy.deepcopy(data) | {"model": "majority", "params": {}, "name": "majority / none"}
    empty["prompt"] = {**empty.get("prompt", {}), "sources": list(prompt_sources(universe))}
    cells.append(Cell("majority", (), config_from_dict(empty, str(path))))
    return cells


def budget_note(cells: list[Cell]) -> str | None:
    """Words for the user when one budget may keep different history for different models of the
    grid: several models, prompts with history and a budget, each model counting its own tokens
    (``prompt.count: model``); None when the models read the same history."""
    models = {c.config.model for c in cells if c.model != "majority"}
    prompt = cells[0].config.prompt
    history = any("history" in c.config.prompt.get("sources", ()) for c in cells)
    if len(models) < 2 or not history or prompt.get("max_tokens", 512) is None or prompt.get("count", "model") != "model":
        return None
    return (f"note: prompt.count is model, so the models of this grid ({', '.join(sorted(models))}) each count the "
            f"{prompt.get('max_tokens', 512)}-token budget in their own tokens (an LLM its tokenizer's, the others "
            "words and punctuation) and may keep different history (docs/data.md, \"Prompts\", measures how much); "
            "set prompt.count to words or a tokenizer (smollm2-135m) to compare them on the "
            "same history")


SKIPPED = "skipped.json"


def cell_dir(out: str | Path, cell: Cell) -> Path:
    return Path(out) / "runs" / cell.key


def cell_status(out: str | Path, cell: Cell) -> dict[str, Any]:
    """``done`` (metrics written), ``skipped`` (the model cannot read the subset; with the reason) or
    ``todo``, read from the cell's run folder, so that units finished anywhere count."""
    run_dir = cell_dir(out, cell)
    if RunFolder(run_dir).metrics_file.is_file():
        return {"status": "done"}
    if (run_dir / SKIPPED).is_file():
        return {"status": "skipped", "reason": read_json(run_dir / SKIPPED)["reason"]}
    return {"status": "todo"}


def run_cell(cell: Cell, out: str | Path, folds: list[int] | None = None, command: str = "",
             collect_only: bool = False) -> dict[str, Any]:
    """Run one cell (all its folds, or only ``folds``: units of work) and return its status. A model
    that cannot read the cell's subset leaves ``skipped.json`` in the cell's folder."""
    status = cell_status(out, cell)
    if status["status"] == "todo":
        run_cell_unit(cell.config, cell_dir(out, cell), folds, command=command, collect_only=collect_only)
    return cell_status(out, cell)


def run_cell_unit(config: EvalConfig, run_dir: Path, folds: int | list[int] | None, command: str = "",
                  collect_only: bool = False) -> None:
    """Evaluate ``folds`` of one cell into ``run_dir``; a model that cannot read the cell's
    subset leaves ``skipped.json`` there instead."""
    try:
        evaluate(config, run_dir, command=command, units=[folds] if isinstance(folds, int) else folds,
                 collect_only=collect_only)
    except NothingToReadError as exc:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / SKIPPED, {"reason": str(exc)})


def grid_units(cells: list[Cell], out: str | Path, command: str = "") -> list[tuple[Cell, int]]:
    """Every unfinished (cell, fold) of the grid, each cell's run folder written here once (so
    that units started together never race to create it)."""
    units = []
    for cell in cells:
        if cell_status(out, cell)["status"] != "todo":
            continue
        run_dir = cell_dir(out, cell)
        evaluate(cell.config, run_dir, command=command, units=[])  # the run folder and its folds
        units += [(cell, f["fold"]) for f in read_json(RunFolder(run_dir).folds_file)
                  if f["run"] and not fold_path(run_dir, f["fold"]).is_file()]
    return units


def run_grid(cells: list[Cell], out: str | Path, command: str = "", collect_only: bool = False) -> dict[str, Any]:
    """Run every cell (skipping finished ones) and write ``DIR/grid.json``. ``collect_only``: fit
    nothing; compute the metrics of cells whose folds were run as units; the cells still
    unfinished are listed under ``missing``."""
    out = Path(out)
    state_path = out / "grid.json"
    state = {"cells": {}}
    missing = []
    for cell in cells:
        try:
            entry = run_cell(cell, out, command=command, collect_only=collect_only)
        except EmoregError as exc:
            if not collect_only:
                raise
            missing.append(f"{cell.key}: {str(exc).split(';')[0]}")
            continue
        state["cells"][cell.key] = entry | {"model": cell.model, "subset": list(cell.subset), "run": str(cell_dir(out, cell))}
        write_json(state_path, state)
    state["missing"] = missing
    state["sources"] = list(max((c.subset for c in cells), key=len))
    state["models"] = list(dict.fromkeys(c.model for c in cells if c.subset))
    write_json(state_path, state)
    return state
