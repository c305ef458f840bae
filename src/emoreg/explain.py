"""Which information source drove a prediction: occlusion, one source at a time, same model.

For each segment and each prompt source it carries (context, person, history, utterance,
nonverbal, introspection), the segment is scored again with that source removed, and the change
in each label's probability is reported: ``full - without``, so a positive number means the
source pushed the prediction towards that label. The history and the current utterance are
occluded separately: without the history, the transcript is the current turn alone; without the
utterance, the current turn's words are replaced by ``[removed]`` (its speaker and place stay).
No retraining: the per-prediction counterpart of the ablation grid. A source the model does not
read changes nothing (tested).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Any

import numpy as np

from .segments import Segment

REMOVED = "[removed]"


def without(segment: Segment, source: str) -> Segment | None:
    """``segment`` with ``source`` removed, or None when it does not carry that source."""
    turns = segment.transcript or ()
    if source == "history":
        return replace(segment, transcript=turns[-1:]) if len(turns) > 1 else None
    if source == "utterance":
        return replace(segment, transcript=turns[:-1] + (replace(turns[-1], text=REMOVED),)) if turns else None
    if source in ("context", "person", "nonverbal", "introspection"):
        return replace(segment, **{source: None}) if segment.has(source) else None
    raise ValueError(f"unknown source {source!r}")


def occlusion(model, segments: list[Segment], proba: np.ndarray | None = None) -> list[dict[str, dict[str, float]]]:
    """Per segment: {source: {label: change in probability when the source is removed}}, for
    the sources of the model's prompt that the segment carries. All re-scoring is one batch."""
    segments = list(segments)
    proba = model.predict_proba(segments) if proba is None else proba
    sources = [s for s in model.prompt.sources]
    jobs, variants = [], []
    for i, segment in enumerate(segments):
        for source in sources:
            changed = without(segment, source)
            if changed is not None:
                jobs.append((i, source))
                variants.append(changed)
    out: list[dict[str, dict[str, float]]] = [{} for _ in segments]
    if variants:
        occluded = model.predict_proba(variants)
        for (i, source), p in zip(jobs, occluded):
            out[i][source] = {label: round(float(a - b), 6) for label, a, b in zip(model.labels_, proba[i], p)}
    return out


def summarise(rows: list[dict[str, Any]], by: str = "predicted") -> dict[str, dict[str, float]]:
    """For each class (of ``by``: predicted or gold), the mean share of each source in the
    probability mass the prediction put on that class: how much removing the source lowers
    p(class), relative to p(class), averaged over the segments of that class (sources that
    raise it count as 0)."""
    shares: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        cls = row.get(by)
        if cls is None or "explain" not in row:
            continue
        p = max(row["proba"][cls], 1e-12)
        for source, delta in row["explain"].items():
            shares[cls][source].append(max(delta[cls], 0.0) / p)
    return {cls: {s: float(np.mean(v)) for s, v in per.items()} for cls, per in sorted(shares.items())}


def plot_summary(summary: dict[str, dict[str, float]], path, title: str):
    """Bars: for each class, the share of its probability that each source carried."""
    from .atomic import pyplot

    plt = pyplot()

    from .atomic import save_figure

    classes = list(summary)
    sources = sorted({s for per in summary.values() for s in per})
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(classes) * max(1, len(sources)) / 3, 3.4))
    width = 0.8 / max(len(sources), 1)
    for j, source in enumerate(sources):
        ax.bar(np.arange(len(classes)) + j * width, [summary[c].get(source, 0) for c in classes], width, label=source)
    ax.set_xticks(np.arange(len(classes)) + 0.4 - width / 2, classes, rotation=20, ha="right")
    ax.set_ylabel("share of p(class) lost without it")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)
