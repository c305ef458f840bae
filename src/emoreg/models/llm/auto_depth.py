"""``layers: auto``: the head's depth and epochs chosen inside each fold, on its training subjects only.

Which layer reads a task best differs by model and by task (SmolLM2's layer 16 of 30 for AnnoMI
client talk, docs/llm.md), so a fixed depth is a guess for any other pair. With ``layers: auto``
``fit``:

1. holds out ``inner_share`` of the *training* subjects (an inner validation split, seeded; never a
   test subject: the model only ever sees the segments it is fitted on);
2. computes, in one states pass to the deepest candidate, the states entering every candidate's
   first tuned layer for all training prompts (``states.entering_states`` with ``also``);
3. trains the head at each candidate depth (``candidates``: values of ``layers``; by default four
   between 40% and 70% of the model's layers) on the rest for up to ``epochs`` epochs, scoring the
   held-out subjects' macro-F1 after every epoch;
4. refits the best (depth, epochs) on all training subjects of the fold; ties go to the shallower
   depth and the fewer epochs (the cheaper cell).

``layers: ensemble`` does not choose: it fits the head at every candidate depth on all the fold's
training subjects (one states pass for all of them) and averages their probabilities
(``fit_depths``). Measured on AnnoMI client talk (docs/llm.md, "The defaults"), the choice on an
inner split of 14 subjects followed the noise (five folds chose four different depths) and scored
below a fixed middle depth; the average over depths scored above each depth alone.

With fewer than ``min_subjects`` training subjects the inner split would rest on a handful of
people, so the choice falls back to ``fallback_layers`` (default: the candidate nearest 55% of the
model) and ``epochs``, and says so. The choice (candidates, every inner score, what was chosen, or
why it fell back) is in ``describe()``, hence in each fold's metadata and the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...errors import EmoregError

if TYPE_CHECKING:  # pragma: no cover
    from .model import LlmClassifier

AUTO_ONLY = ("candidates", "inner_share", "min_subjects", "fallback_layers")
SHARES = (0.4, 0.5, 0.6, 0.7)  # where the default candidates' first tuned layers sit in the model


def model_layers(name: str) -> int:
    """The decoder layer count of ``name`` without loading weights: a shipped model's pinned count or
    a folder's config.json (``loading.known_layers``), else the config a hub id names."""
    from .loading import known_layers

    total = known_layers(name)
    if total is not None:
        return total
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(name)
    config = getattr(config, "text_config", None) or config
    return int(config.num_hidden_layers)


def default_candidates(total: int, tune_layers: int) -> list[int]:
    """Values of ``layers`` whose first tuned layer sits at 40, 50, 60 and 70% of ``total``."""
    out = sorted({min(total, max(tune_layers, round(total * share) + tune_layers)) for share in SHARES})
    return out


def fallback_depth(candidates: list[int], total: int) -> int:
    return min(candidates, key=lambda d: (abs(d / total - 0.55), d))


def _macro_f1(gold: np.ndarray, proba: np.ndarray, n_labels: int) -> float:
    from ...evaluation.metrics import confusion, scores

    return scores(confusion(gold, proba.argmax(1), n_labels))["macro_f1"]


def _child(clf: LlmClassifier, folder: str | None = None, **changes) -> LlmClassifier:
    """A fixed-depth head with ``clf``'s settings and ``changes`` (the auto-only settings dropped);
    its training checkpoints go to ``folder`` of ``clf``'s checkpoint folder (None: none)."""
    params = {k: v for k, v in clf.params.items() if k not in AUTO_ONLY} | changes
    child = type(clf)(task=clf.task, prompt=clf.prompt, seed=clf.seed, **params)
    if folder is not None and clf.checkpoint_dir is not None:
        child.checkpoint_dir = Path(clf.checkpoint_dir) / folder
    return child


def _candidates(clf: LlmClassifier) -> tuple[int, int, list[int]]:
    """The model's layer count, the tuned layers a depth keeps, and the candidate depths (checked)."""
    total = model_layers(str(clf.settings.model.model))
    k = clf.settings.head.tune_layers or 1
    candidates = sorted(clf.settings.head.candidates or default_candidates(total, k))
    too_deep = [d for d in candidates if d > total or d < k]
    if too_deep:
        raise EmoregError(f"llm: candidates {too_deep} are not depths of {clf.settings.model.model} with tune_layers "
                          f"{k}: each must be from {k} to {total} (its layers)")
    return total, k, candidates


def fit_auto(clf: LlmClassifier, segments: list, y: np.ndarray) -> LlmClassifier:
    """Choose the depth and epochs on an inner split of ``segments``' subjects, refit the choice on
    all of them; returns the refitted fixed-depth classifier (its learned state is ``clf``'s)."""
    from ..calibrated import inner_split

    total, k, candidates = _candidates(clf)
    epochs = clf.settings.training.epochs
    subjects = sorted({s.subject_id for s in segments})
    choice = {"candidates": candidates, "model_layers": total, "max_epochs": epochs}
    fallback = clf.settings.head.fallback_layers or fallback_depth(candidates, total)
    if len(subjects) < clf.settings.head.min_subjects or len(candidates) == 1 and epochs <= 1:
        depth, best_epochs = (candidates[0] if len(candidates) == 1 else fallback), epochs
        choice |= {"chosen_layers": depth, "chosen_epochs": best_epochs, "inner_scores": None,
                   "reason": f"fallback: {len(subjects)} training subjects (min_subjects "
                             f"{clf.settings.head.min_subjects}) or nothing to choose"}
    else:
        kept, held = inner_split(subjects, clf.settings.head.inner_share, clf.seed)
        fit_idx = [i for i, s in enumerate(segments) if s.subject_id in kept]
        val_idx = [i for i, s in enumerate(segments) if s.subject_id in held]
        if clf.settings.model.state_cache:  # one pass keeps every candidate's states, for fit and held-out prompts
            from .states import entering_states

            deepest = _child(clf, layers=candidates[-1])
            deepest._setup()
            deepest._load()
            prefixes = [deepest._prefix_ids(s) for s in segments]
            entering_states(deepest, prefixes, candidates[-1] - k, also=[d - k for d in candidates[:-1]])
            del deepest
        scores: dict[int, list[float]] = {}
        val_segments, val_y = [segments[i] for i in val_idx], y[val_idx]
        for depth in candidates:
            child = _child(clf, layers=depth)
            per_epoch: list[float] = []
            child.epoch_callback = lambda m, out=per_epoch: out.append(
                _macro_f1(val_y, m.predict_proba(val_segments), len(clf.task.labels)))
            child.fit([segments[i] for i in fit_idx])
            scores[depth] = per_epoch
            del child
        # the best cell; ties to the shallower depth, then the fewer epochs
        depth, best_epochs = max(((d, e + 1) for d in candidates for e in range(len(scores[d]))),
                                 key=lambda c: (round(scores[c[0]][c[1] - 1], 6), -c[0], -c[1]))
        choice |= {"chosen_layers": depth, "chosen_epochs": best_epochs,
                   "inner_scores": {str(d): [round(v, 4) for v in s] for d, s in scores.items()},
                   "inner_subjects": len(held), "inner_segments": len(val_idx), "fit_segments": len(fit_idx)}
    final = _child(clf, f"depth-{depth:02d}", layers=depth, epochs=best_epochs)
    final.fit(segments)
    final.fit_report.depth_choice = choice
    return final


def fit_depths(clf: LlmClassifier, segments: list) -> list[LlmClassifier]:
    """``layers: ensemble``: the head fitted at every candidate depth on all of ``segments``, the
    deepest first, its states pass keeping the others' states (one pass for all); shallowest first."""
    total, k, candidates = _candidates(clf)
    members = []
    for depth in reversed(candidates):
        lower = [d - k for d in candidates if d < depth]
        extra = {"state_layers": lower} if depth == candidates[-1] and lower and clf.settings.model.state_cache else {}
        members.append(_child(clf, f"depth-{depth:02d}", layers=depth, **extra).fit(segments))
    return members[::-1]
