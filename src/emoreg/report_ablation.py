"""The report of an ablation grid: subsets x models, paired tests against the full set, the drop
when each source is removed, and Shapley values of the sources."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np

from .atomic import atomic_write_text, save_figure
from .evaluation.ablation import subset_name
from .evaluation.results import subject_confusions
from .evaluation.stats import bootstrap_difference, holm, paired_permutation
from .runs import Run, load_run, read_json

N_PERM = 10000


def shapley(values: dict[frozenset, float], sources: list[str]) -> dict[str, float]:
    """Exact Shapley values of ``sources`` for the set function ``values`` (empty set included)."""
    n = len(sources)
    out = {}
    for source in sources:
        others = [s for s in sources if s != source]
        total = 0.0
        for r in range(n):
            weight = math.factorial(r) * math.factorial(n - r - 1) / math.factorial(n)
            for subset in itertools.combinations(others, r):
                total += weight * (values[frozenset(subset) | {source}] - values[frozenset(subset)])
        out[source] = total
    return out


def write_ablation_report(grid_dir: str | Path, out: str | Path | None = None) -> Path:
    grid_dir = Path(grid_dir)
    out = Path(out) if out is not None else grid_dir
    state = read_json(grid_dir / "grid.json")
    sources, models = state["sources"], state["models"]
    runs: dict[tuple[str, tuple[str, ...]], Run] = {}
    skipped = []
    for key, cell in state["cells"].items():
        if cell["status"] == "done":
            runs[(cell["model"], tuple(cell["subset"]))] = load_run(cell["run"])
        else:
            skipped.append((key, cell.get("reason", "")))
    full = tuple(sources)
    subsets = list(dict.fromkeys(s for (m, s) in runs if m != "majority"))
    subsets.sort(key=lambda s: (-len(s), [sources.index(x) for x in s]))
    first = next(iter(runs.values()))
    subjects = sorted({r["subject_id"] for r in first.predictions})
    cms = {key: subject_confusions(run, subjects) for key, run in runs.items()}
    empty_value = runs[("majority", ())].metrics["pooled"]["macro_f1"]["value"] if ("majority", ()) in runs else None

    lines = ["# Information-source ablation", "",
             f"Corpus `{first.data['corpus']}`, task `{first.data['task']}`, {first.metrics['n_segments']:,} test "
             f"segments of {first.metrics['n_subjects']} subjects; every cell uses the same folds and seed. "
             "95% CIs by bootstrap over subjects.", "", "What each source held:", ""]
    notes, present = first.data.get("source_notes", {}), first.data.get("sources_present", {})
    for source in sources:
        segment_field = "transcript" if source in ("history", "utterance") else source
        note = notes.get(source) or (f"present in {present[segment_field]:,} of {first.data['n_segments']:,} segments"
                                     if segment_field in present else "no description from the corpus loader")
        lines.append(f"- `{source}`: {note}")
    if empty_value is not None:
        lines += ["", f"No source at all (majority class, same folds): macro-F1 {empty_value:.3f}."]
    lines += ["", "## Macro-F1 and accuracy per subset", "",
              "| sources | " + " | ".join(f"{m} macro-F1 | {m} accuracy" for m in models) + " |",
              "|---" * (1 + 2 * len(models)) + "|"]
    for subset in subsets:
        cells = []
        for m in models:
            run = runs.get((m, subset))
            if run is None:
                cells += ["n/a", "n/a"]
                continue
            for metric in ("macro_f1", "accuracy"):
                v = run.metrics["pooled"][metric]
                cells.append(f"{v['value']:.3f} [{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}]")
        lines.append(f"| {subset_name(subset)} | " + " | ".join(cells) + " |")

    lines += ["", "## Each subset against the full set", "",
              f"Paired permutation test over subjects ({N_PERM} permutations) on macro-F1; p Holm-corrected "
              "within each model.", "", "| model | sources | Δ macro-F1 vs all | p (Holm) |", "|---|---|---|---|"]
    for m in models:
        if (m, full) not in runs:
            continue
        rows = [(s, paired_permutation(cms[(m, s)], cms[(m, full)], n_perm=N_PERM)["macro_f1"])
                for s in subsets if s != full and (m, s) in runs]
        for (s, test), p in zip(rows, holm([t["p"] for _, t in rows])):
            lines.append(f"| {m} | {subset_name(s)} | {test['difference']:+.3f} | {'<0.0001' if p < 1e-4 else f'{p:.4f}'} |")

    drops = {}
    for m in models:
        for source in sources:
            without = tuple(s for s in full if s != source)
            if (m, full) in runs and (m, without) in runs:
                drops[(m, source)] = bootstrap_difference(cms[(m, full)], cms[(m, without)], "macro_f1")
    if drops:
        lines += ["", "## Drop in macro-F1 when each source is removed", "",
                  "All sources minus all but that one; 95% paired bootstrap CI over subjects.", "",
                  "| model | source removed | drop | 95% CI |", "|---|---|---|---|"]
        for (m, source), (value, low, high) in drops.items():
            lines.append(f"| {m} | {source} | {value:+.3f} | [{low:+.3f}, {high:+.3f}] |")
    figures = []
    if runs:
        figures.append(_heatmap(runs, subsets, models, out / "ablation_heatmap.png"))
    if drops:
        figures.append(_drops(drops, models, sources, out / "ablation_drop.png"))
    lines += ["", "## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figures]

    lines += ["", "## Contribution of each source (Shapley values)", ""]
    if empty_value is None:
        lines.append("Needs the majority-class cell (the value of the empty set).")
    skipped_subsets = {(state["cells"][key]["model"], tuple(state["cells"][key]["subset"])) for key, _ in skipped}
    for m in models:
        needed = [tuple(s for s in full if s in combo) for r in range(1, len(full) + 1)
                  for combo in itertools.combinations(full, r)]
        if all((m, s) in runs or (m, s) in skipped_subsets for s in needed) and empty_value is not None:
            values = {frozenset(): empty_value} | {
                frozenset(s): runs[(m, s)].metrics["pooled"]["macro_f1"]["value"] if (m, s) in runs else empty_value
                for s in needed}
            phi = shapley(values, list(full))
            note = "; subsets it could not use count as no source" if any((m, s) in skipped_subsets for s in needed) else ""
            lines.append(f"**{m}**: " + ", ".join(f"`{s}` {v:+.3f}" for s, v in sorted(phi.items(), key=lambda x: -x[1]))
                         + f" (they sum to macro-F1 with all sources minus the empty set: {sum(phi.values()):+.3f}{note})")
        else:
            lines.append(f"**{m}**: not every subset was run (use `--subsets all`), so no Shapley values.")
    if skipped:
        lines += ["", "## Skipped cells", ""] + [f"- {key}: {reason}" for key, reason in skipped]
    if state.get("missing"):
        lines += ["", "## Unfinished cells (n/a above)", ""] + [f"- {line}" for line in state["missing"]]
    lines.append("")
    return atomic_write_text(out / "report.md", "\n".join(lines))


def _heatmap(runs, subsets, models, path: Path) -> Path:
    from .atomic import pyplot

    plt = pyplot()

    grid = np.full((len(subsets), len(models)), np.nan)
    for i, s in enumerate(subsets):
        for j, m in enumerate(models):
            if (m, s) in runs:
                grid[i, j] = runs[(m, s)].metrics["pooled"]["macro_f1"]["value"]
    longest = max(len(subset_name(s)) for s in subsets)
    fig, ax = plt.subplots(figsize=(2.5 + 0.06 * longest + 1.3 * len(models), 1.2 + 0.32 * len(subsets)))
    cmap = plt.get_cmap("viridis").with_extremes(bad="lightgrey")
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, aspect="auto")
    for i in range(len(subsets)):
        for j in range(len(models)):
            missing = np.isnan(grid[i, j])
            ax.text(j, i, "n/a" if missing else f"{grid[i, j]:.3f}", ha="center", va="center", fontsize=8,
                    color="black" if missing or grid[i, j] >= np.nanmean(grid) else "white")
    ax.set_xticks(range(len(models)), models)
    ax.set_yticks(range(len(subsets)), [subset_name(s) for s in subsets], fontsize=8)
    ax.set_title("Macro-F1 per subset of sources\n(n/a: the model cannot use that subset)", fontsize=10)
    fig.colorbar(image, ax=ax, label="macro-F1")
    fig.tight_layout()
    return save_figure(fig, path)


def _drops(drops, models, sources, path: Path) -> Path:
    from .atomic import pyplot

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(1.5 + 1.2 * len(sources) * max(1, len(models)) / 2, 3.8))
    width = 0.8 / len(models)
    for j, m in enumerate(models):
        xs, ys, errs = [], [], [[], []]
        for i, source in enumerate(sources):
            if (m, source) in drops:
                value, low, high = drops[(m, source)]
                xs.append(i + (j - (len(models) - 1) / 2) * width)
                ys.append(value)
                errs[0].append(value - low)
                errs[1].append(high - value)
        ax.bar(xs, ys, width=width, yerr=errs, capsize=3, label=m)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(sources)), sources)
    ax.set_ylabel("macro-F1 lost when the source is removed")
    ax.set_title("Drop in macro-F1 without each source (95% paired bootstrap CI)", fontsize=10)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
