"""What each run's fold models said of themselves (``folds/fold-NN.meta.json``), as the report
shows it: a Bayesian network's variables and edges, the depth ``layers: auto`` chose in each fold,
the numeric path (dtype, CPU flags) the LLM ran in."""

from __future__ import annotations

import json
from collections import Counter

from .errors import EmoregError
from .runs import Run, RunFolder


def fold_metas(run: Run) -> list[dict]:
    """Every fold's metadata in the run folder (what each fold's model described of itself)."""
    return [meta for _, meta in indexed_fold_metas(run)]


def indexed_fold_metas(run: Run) -> list[tuple[int, dict]]:
    """(fold, metadata) for every fold the run folder has metadata of; a file that is not a JSON
    object (damaged, or edited by hand) is a clear error naming it."""
    out = []
    for path in sorted((run.path / "folds").glob("fold-*.meta.json")):
        rerun = f"rerun that fold (delete {path.with_name(path.name.replace('.meta.json', '.jsonl'))} and evaluate again)"
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise EmoregError(f"{path}: unreadable fold metadata ({exc}); {rerun}") from None
        if not isinstance(meta, dict):
            raise EmoregError(f"{path}: fold metadata must be a JSON object, found {type(meta).__name__}; {rerun}")
        out.append((int(path.name.split(".")[0].split("-")[1]), meta))
    return out


def model_notes(run: Run) -> list[str]:
    """What the fold models looked like (e.g. a Bayesian network's variables and edges)."""
    metas = fold_metas(run)
    models = [m.get("model") or {} for m in metas]
    if not models or not any("edges" in m for m in models):
        return []
    variables = Counter(v for m in models for v in m.get("variables", {}))
    edges = Counter(f"{a} -> {b}" for m in models for a, b in m.get("edges", []))
    lines = [f"Bayesian network variables (folds using each, of {len(models)}): "
             + ", ".join(f"`{v}` {n}" for v, n in sorted(variables.items()))]
    lines.append("Edges (folds that learned each): " + ", ".join(f"`{e}` {n}" for e, n in edges.most_common()))
    return lines


def depth_choices(run: Run) -> list[str]:
    """The LLM head's depth and epochs as ``layers: auto`` chose them in each fold (of an ensemble's
    members too), with the inner validation macro-F1 of every candidate at its best epoch."""
    rows = []
    for fold, meta in indexed_fold_metas(run):
        model = meta.get("model") or {}
        found = [("", model)] + [(f" ({name})", m) for name, m in (model.get("members") or {}).items()]
        for name, m in found:
            choice = (m or {}).get("depth_choice")
            if not choice:
                continue
            scores = choice.get("inner_scores")
            inner = ", ".join(f"{d}: {max(v):.3f} (epoch {v.index(max(v)) + 1})" for d, v in scores.items()) \
                if scores else choice.get("reason", "")
            rows.append(f"| {fold}{name} | {choice['chosen_layers']} of {choice['model_layers']} | "
                        f"{choice['chosen_epochs']} | {inner} |")
    if not rows:
        return []
    return [f"{run.name}: the LLM head's depth chosen in each fold on an inner split of its training subjects "
            "(`layers: auto`; inner validation macro-F1 of each candidate depth at its best epoch):", "",
            "| fold | layers kept | epochs | inner macro-F1 by depth |", "|---|---|---|---|", *rows]


def numeric_path(run: Run) -> str | None:
    """The dtype the run's models trained and scored in (None for models without one), with the
    CPU flags that decided it: "bf16 (avx512_bf16)", "fp32 (CPU without fast bf16)", "mixed: ..."."""
    metas = fold_metas(run)
    dtypes = sorted({(m.get("model") or {}).get("dtype") for m in metas} - {None})
    if not dtypes:
        return None
    env_file = RunFolder(run.path).environment_file
    numerics = (json.loads(env_file.read_text()).get("numerics") if env_file.is_file() else None) or {}
    prefixes = {_prefix_words(m.get("model") or {}) for m in metas} - {""}
    if prefixes:
        dtypes = [f"{d}, frozen layers {' / '.join(sorted(prefixes))}" for d in dtypes]
    if len(dtypes) > 1:
        return "mixed: " + " and ".join(dtypes)
    if numerics.get("device") == "cuda":
        return f"{dtypes[0]} (CUDA)"
    flags = numerics.get("cpu_bf16_flags")
    if flags is None:
        return dtypes[0]
    return f"{dtypes[0]} ({', '.join(flags) if flags else 'CPU without fast bf16'})"


def _prefix_words(model: dict) -> str:
    """How a fold's frozen layers ran, where not as torch in the model's dtype: "int8",
    "openvino", "openvino int8"."""
    engine = model.get("prefix_engine", "torch")
    int8 = model.get("prefix_dtype") == "int8"
    return " ".join(w for w in ("" if engine == "torch" else engine, "int8" if int8 else "") if w)
