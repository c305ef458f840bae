"""Folds by subject: no subject is ever in the training and the test part of one fold."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from ..errors import EmoregError
from ..segments import Segment


@dataclass(frozen=True)
class Fold:
    index: int
    test_subjects: tuple[str, ...]

    def split(self, segments: Sequence[Segment]) -> tuple[list[Segment], list[Segment]]:
        test = set(self.test_subjects)
        train = [s for s in segments if s.subject_id not in test]
        held = [s for s in segments if s.subject_id in test]
        return train, held


def make_folds(segments: Sequence[Segment], kind: str, n_folds: int | None, seed: int) -> list[Fold]:
    """``loso``: one fold per subject. ``group-kfold``: ``n_folds`` folds of whole subjects,
    stratified by label where the subjects allow it (scikit-learn's StratifiedGroupKFold),
    shuffled with ``seed``. The same segments and seed give the same folds."""
    subjects = sorted({s.subject_id for s in segments})
    if len(subjects) < 2:
        raise EmoregError(f"cross-subject evaluation needs at least 2 subjects, found {len(subjects)}")
    if kind == "loso":
        return [Fold(i, (subject,)) for i, subject in enumerate(subjects)]
    if kind != "group-kfold":
        raise EmoregError(f"unknown split {kind!r}; use group-kfold or loso")
    if n_folds is None or n_folds > len(subjects):
        raise EmoregError(f"{n_folds} folds need at least {n_folds} subjects, found {len(subjects)}; "
                          "use fewer folds or split: {kind: loso}")
    ordered = sorted(segments, key=lambda s: s.segment_id)  # independent of input order
    labels = [s.label for s in ordered]
    groups = [s.subject_id for s in ordered]
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = []
    for index, (_, test_idx) in enumerate(splitter.split(np.zeros(len(ordered)), labels, groups)):
        folds.append(Fold(index, tuple(sorted({groups[i] for i in test_idx}))))
    return folds
