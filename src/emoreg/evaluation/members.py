"""The members of an ensemble run as runs of their own.

``model: ensemble``, and ``model: llm`` with ``layers: ensemble`` (the head at several depths), keep
each member's test probabilities in the fold metadata (``member_proba``); ``split_run`` turns them
into one run folder per member, so reports compare the members with the ensemble, and with each
other, on exactly the fits the ensemble averaged (``emoreg report RUN --members``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from ..errors import EmoregError
from ..runs import RunFolder, finished_folds, fold_path, read_config, read_json, read_jsonl, split_of, write_json, write_jsonl
from ..yamlio import dump_yaml
from .results import fold_results


def has_members(run: Path) -> bool:
    """Whether ``run`` averaged members whose own probabilities its folds kept: ``model: ensemble``,
    or ``model: llm`` with ``layers: ensemble`` (the head at several depths)."""
    config = read_config(run)
    if config.get("model") == "ensemble":
        return True
    folds = finished_folds(run) if config.get("model") == "llm" else []
    return bool(folds) and "member_proba" in read_json(fold_path(run, folds[0], ".meta.json"))["model"]


def split_run(run: Path, out: Path) -> list[Path]:
    if not has_members(run):
        raise EmoregError(f"{run} is a run of {read_config(run).get('model')!r}, not of an ensemble and not of "
                          "an llm with layers: ensemble whose folds kept each depth's probabilities")
    config = read_config(run)
    folds = finished_folds(run)
    metas = {k: read_json(fold_path(run, k, ".meta.json"))["model"] for k in folds}
    names = list(metas[folds[0]]["member_proba"])
    metrics_file = RunFolder(run).metrics_file
    in_split = (read_json(metrics_file).get("folds_in_split", len(folds)) if metrics_file.is_file()
                else len(split_of(run) or folds))  # a run still going (report --finished-folds)
    made = []
    for i, name in enumerate(names):
        if config["model"] == "ensemble":
            spec = config["params"]["members"][i]
        else:  # llm, layers ensemble: the member is the same llm at one depth (candidates dropped)
            from ..models.llm.auto_depth import AUTO_ONLY

            spec = {"model": "llm", "params": {k: v for k, v in (config.get("params") or {}).items()
                                               if k not in AUTO_ONLY} | {
                "layers": metas[folds[0]]["members"][name]["layers"]}}
        target = out / name.replace(" ", "-")
        (target / "folds").mkdir(parents=True, exist_ok=True)
        member_config = {k: v for k, v in config.items() if k not in ("model", "params", "name")}
        member_config |= {"name": f"{config.get('name') or run.name}:{name}", "model": spec["model"],
                          "params": spec.get("params") or {}}
        RunFolder(target).config_file.write_text(dump_yaml(member_config))
        for part in ("data_file", "folds_file", "environment_file"):
            source = getattr(RunFolder(run), part)
            if source.is_file():
                shutil.copy(source, getattr(RunFolder(target), part))
        for k in folds:
            rows = read_jsonl(fold_path(run, k))
            proba = np.array(metas[k]["member_proba"][name])
            labels = list(rows[0]["proba"])
            write_jsonl(fold_path(target, k), [r | {"predicted": labels[int(np.argmax(p))],
                                                     "proba": dict(zip(labels, map(float, p)))}
                                                for r, p in zip(rows, proba)])
            write_json(fold_path(target, k, ".meta.json"), {"model": metas[k]["members"][name]})
        rows, metrics = fold_results(target, folds, None, config.get("seed", 0), in_split)
        write_jsonl(RunFolder(target).predictions_file, rows)
        write_json(RunFolder(target).metrics_file, metrics)
        made.append(target)
    return made


