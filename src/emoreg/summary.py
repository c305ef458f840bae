"""What a corpus holds: counts of subjects, sessions, segments, labels and sources."""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from .atomic import save_figure
from .corpora.base import Corpus
from .segments import source_counts


def summarise(corpus: Corpus) -> dict[str, Any]:
    segs = corpus.segments
    per_subject = Counter(s.subject_id for s in segs)
    labels = Counter(s.label for s in segs if s.label is not None)
    return {
        "corpus": corpus.name,
        "task": corpus.task.name,
        "segments": len(segs),
        "subjects": len(per_subject),
        "sessions": len({s.session_id for s in segs}),
        "segments_per_subject": {
            "min": min(per_subject.values()),
            "median": statistics.median(per_subject.values()),
            "max": max(per_subject.values()),
        },
        "labels": {label: labels.get(label, 0) for label in corpus.task.labels},
        "unlabelled": sum(1 for s in segs if s.label is None),
        "sources": source_counts(segs),
        "source_notes": dict(corpus.source_notes),
        "notes": list(corpus.notes),
        "files": dict(corpus.files),
    }


def format_summary(summary: dict[str, Any]) -> str:
    n = summary["segments"]

    def share(count: int) -> str:
        return f"{count:,} ({100 * count / n:.1f}%)" if n else f"{count:,}"

    sps = summary["segments_per_subject"]
    lines = [
        f"corpus     {summary['corpus']} (task {summary['task']})",
        f"segments   {n:,}",
        f"subjects   {summary['subjects']:,} (segments per subject: min {sps['min']}, "
        f"median {sps['median']:g}, max {sps['max']})",
        f"sessions   {summary['sessions']:,}",
        "labels     " + " / ".join(f"{k} {share(v)}" for k, v in summary["labels"].items()),
    ]
    if summary["unlabelled"]:
        lines.append(f"unlabelled {summary['unlabelled']:,}")
    lines.append("sources    " + ", ".join(f"{k} {share(v)}" for k, v in summary["sources"].items()))
    for source, note in summary["source_notes"].items():
        lines.append(f"  {source}: {note}")
    if summary["notes"]:
        lines.append("notes")
        lines += [f"  - {note}" for note in summary["notes"]]
    return "\n".join(lines)


def plot_labels_per_subject(corpus: Corpus, path: Path) -> Path:
    """Stacked bars: how many segments of each label every subject has (largest first)."""
    from .atomic import pyplot

    plt = pyplot()

    counts: dict[str, Counter] = {}
    for s in corpus.segments:
        counts.setdefault(s.subject_id, Counter())[s.label] += 1
    subjects = sorted(counts, key=lambda k: -sum(counts[k].values()))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.12 * len(subjects) + 2), 4.0))
    bottom = [0] * len(subjects)
    for label in corpus.task.labels:
        heights = [counts[s].get(label, 0) for s in subjects]
        ax.bar(range(len(subjects)), heights, bottom=bottom, label=label, width=0.85)
        bottom = [b + h for b, h in zip(bottom, heights)]
    ax.set_xlabel(f"subject ({len(subjects)}, largest first)")
    ax.set_ylabel("segments")
    ax.set_title(f"{corpus.name}: labels per subject ({corpus.task.name})")
    ax.set_xticks([])
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)
