"""Reports: finished run folders -> ``report.md`` with tables, paired tests and PNG figures.

Reports read run folders only (predictions and metrics); they never load a model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .atomic import atomic_write_text, save_figure
from .errors import EmoregError
from .evaluation.metrics import METRICS
from .evaluation.results import compute_metrics, load_partial_runs, subject_confusions
from .evaluation.stats import holm, mcnemar, paired_permutation
from .report_models import depth_choices, fold_metas, model_notes, numeric_path
from .runs import Run, RunFolder, load_run, split_of

METRIC_NAMES = {"macro_f1": "macro-F1", "accuracy": "accuracy", "weighted_f1": "weighted-F1", "uar": "UAR"}
N_PERM = 10000


def _fmt(metric: dict) -> str:
    low, high = metric["ci95"]
    return f"{metric['value']:.3f} [{low:.3f}, {high:.3f}]"


def compare(runs: Sequence[Run], seed: int = 0) -> list[dict]:
    """Paired tests of every run against the first (same segments required), Holm-corrected."""
    base = runs[0]
    ids = sorted(r["segment_id"] for r in base.predictions)
    subjects = sorted({r["subject_id"] for r in base.predictions})
    base_cms = subject_confusions(base, subjects)
    base_gold, base_pred, _ = base.arrays()
    rows = []
    for run in runs[1:]:
        if sorted(r["segment_id"] for r in run.predictions) != ids:
            raise EmoregError(f"{run.path} and {base.path} predict different segments; paired tests need "
                              "runs of the same corpus and task")
        cms = subject_confusions(run, subjects)
        gold, pred, _ = run.arrays()
        perm = paired_permutation(cms, base_cms, n_perm=N_PERM, seed=seed)
        rows.append({
            "run": run.name, "against": base.name,
            "same_folds": split_of(run.path) == split_of(base.path),
            "macro_f1": perm["macro_f1"], "accuracy": perm["accuracy"],
            "mcnemar": mcnemar(pred == gold, base_pred == base_gold),
        })
    for key in ("macro_f1", "accuracy"):
        for row, p in zip(rows, holm([r[key]["p"] for r in rows])):
            row[key]["p_holm"] = p
    for row, p in zip(rows, holm([r["mcnemar"]["p"] for r in rows])):
        row["mcnemar"]["p_holm"] = p
    return rows


def _inputs(run: Run) -> str:
    from .models import MODELS

    sources = run.config.get("prompt", {}).get("sources", [])
    cls = MODELS.get(run.config["model"])
    return cls.inputs(run.config.get("params", {}), sources) if cls else ", ".join(sources)


def _p(value: float) -> str:
    return "<0.0001" if value < 0.0001 else f"{value:.4f}"


def plot_confusions(runs: Sequence[Run], path: Path) -> Path:
    from .atomic import pyplot

    plt = pyplot()

    n = len(runs)
    k = len(runs[0].labels)
    size = 1.0 + 0.55 * k
    fig, axes = plt.subplots(1, n, figsize=(size * n + 0.5, size + 0.6), squeeze=False)
    for ax, run in zip(axes[0], runs):
        cm = np.array(run.metrics["confusion"], dtype=float)
        norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{norm[i, j]:.2f}\n({int(cm[i, j])})", ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.6 else "black")
        ax.set_xticks(range(k), run.labels, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(k), run.labels, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{run.name}\nmacro-F1 {run.metrics['pooled']['macro_f1']['value']:.3f}", fontsize=9)
    fig.suptitle("Confusion matrices (rows normalised per true class; counts in brackets)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_scores(runs: Sequence[Run], path: Path) -> Path:
    """Macro-F1 and accuracy of every run with their 95% CIs (bootstrap over subjects), one row each."""
    from .atomic import pyplot

    plt = pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(8, 0.9 + 0.38 * len(runs)), sharey=True, squeeze=False)
    rows = np.arange(len(runs))[::-1]  # the first run on top, as in the table
    for ax, metric in zip(axes[0], ("macro_f1", "accuracy")):
        values = np.array([r.metrics["pooled"][metric]["value"] for r in runs])
        ci = np.array([r.metrics["pooled"][metric]["ci95"] for r in runs])
        ax.errorbar(values, rows, xerr=[values - ci[:, 0], ci[:, 1] - values], fmt="o", color="C0",
                    ecolor="C0", capsize=3, markersize=4)
        ax.axvline(values[0], color="grey", linewidth=0.8, linestyle=":")
        ax.set_xlabel(f"{METRIC_NAMES[metric]} (95% CI over subjects)")
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(rows, [r.name for r in runs], fontsize=8)
    fig.suptitle("Pooled scores of each run (dotted: the first run)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_per_subject(runs: Sequence[Run], path: Path) -> Path:
    from .atomic import pyplot

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(runs), 4.0))
    rng = np.random.default_rng(0)
    data = []
    for i, run in enumerate(runs):
        per = run.metrics["per_subject"]
        values = np.array([v["macro_f1"] for v in per.values()])
        sizes = np.array([v["n"] for v in per.values()], dtype=float)
        ax.scatter(i + rng.uniform(-0.18, 0.18, len(values)), values, s=8 + 60 * sizes / sizes.max(),
                   alpha=0.5, edgecolor="none")
        data.append(values)
    ax.boxplot(data, positions=range(len(runs)), widths=0.5, showfliers=False)
    ax.set_xticks(range(len(runs)), [r.name for r in runs], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("macro-F1 of the subject's segments")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Per-subject macro-F1 (dot size: segments of the subject)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def _losses(run: Run) -> list[list[dict]]:
    from .runs import fold_path

    folds = run.metrics.get("folds_run")  # the folds the report covers (older runs: every fold found)
    paths = ([fold_path(run.path, k, ".meta.json") for k in folds] if folds is not None
             else sorted((run.path / "folds").glob("fold-*.meta.json")))
    metas = [json.loads(p.read_text()) for p in paths if p.is_file()]
    return [m["model"]["loss"] for m in metas if (m.get("model") or {}).get("loss")]


def plot_losses(runs: Sequence[Run], path: Path) -> Path | None:
    """Training loss per step of every fold of every run that logged one (None if none did)."""
    curves = [(run, _losses(run)) for run in runs]
    curves = [(run, c) for run, c in curves if c]
    if not curves:
        return None
    from .atomic import pyplot

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(7, 3.8))
    for n, (run, folds) in enumerate(curves):
        for i, history in enumerate(folds):
            steps = [h["step"] for h in history]
            loss = np.array([h["loss"] for h in history])
            window = max(1, len(loss) // 20)
            smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
            ax.plot(steps, loss, color=f"C{n}", alpha=0.2, linewidth=0.8)
            ax.plot(steps[window - 1:], smooth, color=f"C{n}", linewidth=1.5,
                    label=f"{run.name}" if i == 0 else None)
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss (cross-entropy)")
    ax.set_title("Training loss per fold (faint: per step; bold: moving average)", fontsize=10)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def calibration_of(run: Run) -> dict:
    """The run's probability metrics (ECE, Brier, log-loss, reliability bins): from metrics.json,
    or computed from its predictions for runs written before they were part of it."""
    if "calibration" in run.metrics:
        return run.metrics["calibration"]
    return compute_metrics(run.predictions, list(run.labels), run.config.get("seed", 0))["calibration"]


def plot_reliability(runs: Sequence[Run], path: Path) -> Path:
    """One reliability diagram per run: accuracy against confidence in equal-mass bins."""
    from .atomic import pyplot

    plt = pyplot()

    fig, axes = plt.subplots(1, len(runs), figsize=(3.2 * len(runs), 3.3), squeeze=False)
    for ax, run in zip(axes[0], runs):
        cal = calibration_of(run)
        bins = cal["reliability"]
        kept = [i for i, n in enumerate(bins["count"]) if n]
        ax.plot([0, 1], [0, 1], color="#999", lw=1, ls="--")
        ax.plot([bins["confidence"][i] for i in kept], [bins["accuracy"][i] for i in kept], marker="o", ms=3)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top label)", ylabel="accuracy")
        ax.set_title(f"{run.name}\nECE {cal['ece']['value']:.3f}", fontsize=9)
    fig.suptitle("Reliability (equal-mass bins; on the diagonal: calibrated)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def _calibration_notes(run: Run) -> list[str]:
    """What ``calibrate`` fitted in each fold (temperature, held-out log-loss and macro-F1)."""
    fitted = [m.get("model", {}).get("calibration") for m in fold_metas(run)]
    fitted = [f for f in fitted if f]
    if not fitted:
        return []
    nll = [f["held_out_nll"] for f in fitted]
    f1 = [f["held_out_macro_f1"] for f in fitted]
    what = f"calibrate {fitted[0]['method']}, decide {fitted[0]['decide']}"
    if fitted[0]["method"] == "temperature":
        per_fold = "temperature per fold: " + ", ".join(f"{f['temperature']:.2f}" for f in fitted)
    elif fitted[0]["method"] == "vector":
        per_fold = "per-label scales per fold: " + "; ".join(", ".join(f"{v:.2f}" for v in f["scale"]) for f in fitted)
    else:
        per_fold = "no recalibration"
    if fitted[0]["decide"] == "macro-f1":
        per_fold += "; decision biases per fold: " + "; ".join(", ".join(f"{v:+.1f}" for v in f["biases"])
                                                             for f in fitted)
    return [f"{run.name}: {what}, fitted on {np.mean([f['held_out_subjects'] for f in fitted]):.0f} held-out training "
            f"subjects per fold ({per_fold}); held-out log-loss "
            f"{np.mean([n['before'] for n in nll]):.3f} -> {np.mean([n['after'] for n in nll]):.3f}, held-out "
            f"macro-F1 {np.mean([v['before'] for v in f1]):.3f} -> {np.mean([v['after'] for v in f1]):.3f} "
            f"(means over {len(fitted)} folds)"]


def _member_spread(runs: Sequence[Run]) -> list[str]:
    """For each ensemble reported with its members (``--members``: seeds, depths, models): how far the
    members alone spread in macro-F1, and where their average lands."""
    lines = []
    for run in runs:
        alone = [r for r in runs if r.name.startswith(run.name + ":")]
        if len(alone) < 2:
            continue
        f1 = np.array([r.metrics["pooled"]["macro_f1"]["value"] for r in alone])
        own = run.metrics["pooled"]["macro_f1"]["value"]
        lines.append(f"- **{run.name}**: its {len(alone)} members alone score {f1.min():.3f} to {f1.max():.3f} "
                     f"macro-F1 (mean {f1.mean():.3f}, sd {f1.std(ddof=1):.3f}); their average {own:.3f}, "
                     f"{own - f1.mean():+.3f} over the members' mean.")
    return lines


def write_report(run_paths: Sequence[str | Path], out: str | Path, finished_folds: bool = False,
                 members: bool = False) -> Path:
    """``finished_folds``: an interim report of runs still in progress, on the folds all have finished.
    ``members``: each member of an ensemble run is reported too, right after it, as a run of its own
    (written under ``out/members/``, from the member probabilities of the same fits)."""
    if members:
        from .evaluation.members import has_members, split_run

        expanded: list[str | Path] = []
        for path in run_paths:
            expanded.append(path)
            if RunFolder(path).config_file.is_file() and has_members(Path(path)):
                expanded += split_run(Path(path), Path(out) / "members" / Path(path).name)
        run_paths = expanded
    runs = load_partial_runs(list(run_paths)) if finished_folds else [load_run(p) for p in run_paths]
    if len({tuple(r.labels) for r in runs}) > 1:
        raise EmoregError("the runs use different label sets; report runs of one task together")
    out = Path(out)
    lines = ["# emoreg report", ""]
    first = runs[0]
    total = first.metrics.get("folds_in_split", first.metrics["n_folds"])
    folds = (f"{first.metrics['n_folds']} folds" if total == first.metrics["n_folds"] else
             f"test folds {first.metrics['folds_run']} of a {total}-fold split: the test segments of those folds only")
    lines += [f"Corpus `{first.data['corpus']}`, task `{first.data['task']}`: {first.metrics['n_segments']:,} "
              f"test segments of {first.metrics['n_subjects']} subjects ({first.data['n_segments']:,} segments of "
              f"{first.data['n_subjects']} subjects in the corpus), evaluated across subjects "
              f"({folds}; no subject is in training and test of a fold).", ""]
    if first.data.get("within_fold"):
        w = first.data["within_fold"]
        lines += [f"**Validation split**: the {w['excluded_subjects']} test subjects of fold {w['fold']} "
                  f"({w['excluded_segments']:,} segments) were removed before splitting, so these numbers "
                  "are for choosing settings; they never saw those subjects.", ""]
    if first.metrics.get("interim"):
        lines += [f"**Interim report** (`--finished-folds`): the runs are not all finished; this compares them on "
                  f"the folds every one has finished, {first.metrics['folds_run']} of {total}.", ""]
    lines += ["## Results", "",
              "Pooled over all test segments; 95% CIs by bootstrap over subjects "
              f"({first.metrics['bootstrap']['resamples']} resamples).", ""]
    lines.append("| run | model | reads | " + " | ".join(METRIC_NAMES[m] for m in METRICS)
                 + " | fold-mean macro-F1 | numerics |")
    lines.append("|---" * (5 + len(METRICS)) + "|")
    paths = {run.name: numeric_path(run) for run in runs}
    for run in runs:
        sources = _inputs(run)
        fm = run.metrics["fold_mean"]["macro_f1"]
        lines.append(f"| {run.name} | {run.config['model']} | {sources} | "
                     + " | ".join(_fmt(run.metrics["pooled"][m]) for m in METRICS)
                     + f" | {fm['mean']:.3f} ± {fm['std']:.3f} | {paths[run.name] or '-'} |")
    lines.append("")
    spread = _member_spread(runs)
    if spread:
        lines += spread + [""]
    dtypes = {path.split(" ")[0] for path in paths.values() if path}
    if len(dtypes) > 1 or any(path and path.startswith("mixed") for path in paths.values()):
        lines += ["**Numeric paths differ**: " + "; ".join(f"{name}: {path}" for name, path in paths.items() if path)
                  + ". bf16 and fp32 give different numbers (a few predictions flip), so part of a difference "
                  "between these runs may be the dtype; pin `params.dtype` in the configs to compare like with like.", ""]
    if len(runs) > 1:
        rows = compare(runs)
        lines += ["## Paired tests against the first run", "",
                  f"Permutation test over subjects ({N_PERM} permutations; each swaps the two runs' "
                  "predictions for a random half of the subjects), and McNemar's exact test on "
                  "segments. p-values Holm-corrected over the comparisons.", "",
                  "| run | vs | Δ macro-F1 | p (Holm) | Δ accuracy | p (Holm) | McNemar: only run right / only first right | p (Holm) |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            flag = "" if r["same_folds"] else " (different folds)"
            lines.append(f"| {r['run']}{flag} | {r['against']} | {r['macro_f1']['difference']:+.3f} | "
                         f"{_p(r['macro_f1']['p_holm'])} | {r['accuracy']['difference']:+.3f} | "
                         f"{_p(r['accuracy']['p_holm'])} | {r['mcnemar']['a_only']} / {r['mcnemar']['b_only']} | "
                         f"{_p(r['mcnemar']['p_holm'])} |")
        lines.append("")
    lines += ["## Calibration", "",
              "How far the probabilities can be taken at their word: expected calibration error (ECE, 15 "
              "equal-mass bins of the top label's confidence), Brier score (0-2) and log-loss; lower is "
              "better; 95% CIs by the same bootstrap over subjects.", "",
              "| run | ECE | Brier | log-loss |", "|---|---|---|---|"]
    for run in runs:
        cal = calibration_of(run)
        lines.append(f"| {run.name} | " + " | ".join(_fmt(cal[m]) for m in ("ece", "brier", "log_loss")) + " |")
    lines.append("")
    for run in runs:
        lines += [f"- {note}" for note in _calibration_notes(run)]
    lines += ["", "![reliability diagrams](reliability.png)", ""]
    plot_reliability(runs, out / "reliability.png")
    lines += ["## Figures", "", "![macro-F1 and accuracy with 95% CIs](scores.png)", "",
              "![confusion matrices](confusion.png)", "",
              "![per-subject macro-F1](per_subject.png)", ""]
    if plot_losses(runs, out / "loss.png") is not None:
        at = lines.index("![per-subject macro-F1](per_subject.png)") + 1
        lines[at:at] = ["", "![training loss](loss.png)"]
    plot_scores(runs, out / "scores.png")
    plot_confusions(runs, out / "confusion.png")
    plot_per_subject(runs, out / "per_subject.png")
    lines += ["## Per class", ""]
    for run in runs:
        lines += [f"**{run.name}**", "", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        for label, v in run.metrics["per_class"].items():
            lines.append(f"| {label} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {int(v['support'])} |")
        lines.append("")
    lines += ["## Data and models", ""]
    for note in first.data.get("notes", []):
        lines.append(f"- {note}")
    for source, note in first.data.get("source_notes", {}).items():
        lines.append(f"- source `{source}`: {note}")
    for run in runs:
        for note in model_notes(run):
            lines.append(f"- {run.name}: {note}")
    lines.append("")
    for run in runs:
        choices = depth_choices(run)
        lines += choices + ([""] if choices else [])
    lines += ["## Runs", ""] + [f"- {r.name}: `{r.path}`" for r in runs] + [""]
    return atomic_write_text(out / "report.md", "\n".join(lines))
