"""``model: replay``: the probabilities a finished run predicted, read back instead of fitted again.

Decoding over a session (``decode:``) and late fusion (``model: ensemble``) combine a model's test
probabilities with things fitted on the training subjects (transitions, fixed weights). A run
folder already holds those probabilities for every test segment of every finished fold, each made
by a model that never saw the segment's subject; replaying them lets such a combination be
evaluated in seconds instead of retraining an LLM for every fold::

    model: replay
    params: {run: runs/annomi-llm-head}     # a run folder (relative to the working directory)
    decode: {temporal: filter}

The evaluation must use the run's split (same corpus, task, split kind, folds and seed): each
fold's training subjects must be exactly those the replayed fold trained on, and every segment's
gold label must be the one the run recorded; otherwise it is an error, never a silent mismatch.
Replay predicts test segments only, so it cannot sit under ``calibrate:`` (whose inner split asks
for predictions of training subjects).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import EmoregError
from ..runs import RunFolder, finished_folds, fold_path, fold_tests, read_jsonl
from .base import SegmentClassifier
from .rules import text


class Replay(SegmentClassifier):
    """run: the run folder whose predictions are replayed."""

    name = "replay"
    defaults = {"run": None}
    rules = {"run": text()}

    @classmethod
    def check_params(cls, params) -> None:
        super().check_params(params)
        if "run" not in params:
            raise EmoregError("model 'replay': params.run is required: the run folder whose predictions to replay")
        if not RunFolder(params["run"]).folds_file.is_file():  # a typo fails before any run folder exists
            raise EmoregError(f"model 'replay': params.run {params['run']!r} is not a run folder (no folds.json "
                              "there); give a folder written by `emoreg evaluate`, relative to the working directory")

    @classmethod
    def inputs(cls, params, sources):
        return f"the predictions of {params.get('run')}"

    def _rows(self) -> tuple[dict, dict]:
        run = Path(self._param("run"))
        if not RunFolder(run).folds_file.is_file():
            raise EmoregError(f"replay: {run} is not a run folder (no folds.json); give params.run a folder "
                              "written by `emoreg evaluate`")
        folds = fold_tests(run)
        rows = {}
        for k in finished_folds(run):
            for row in read_jsonl(fold_path(run, k)):
                rows[row["segment_id"]] = row
        if not rows:
            raise EmoregError(f"replay: {run} has no finished fold to replay")
        return rows, folds

    def _fit(self, segments, y):
        self.rows_, self.folds_ = self._rows()
        self.train_subjects_ = {s.subject_id for s in segments}
        everyone = {s for subjects in self.folds_.values() for s in subjects}
        held = everyone - self.train_subjects_
        matching = [k for k, subjects in self.folds_.items() if subjects == held]
        if not matching:
            raise EmoregError(f"replay: no fold of {self._param('run')} trained on exactly this fold's training "
                              "subjects; evaluate with the run's split (the same corpus, split kind, folds and "
                              "seed) and without calibrate: (its inner split asks for predictions no fold made)")
        self.fold_ = matching[0]

    def _predict_proba(self, segments):
        run = self._param("run")
        out = np.zeros((len(segments), len(self.task.labels)))
        for i, s in enumerate(segments):
            row = self.rows_.get(s.segment_id)
            if row is None or row["fold"] != self.fold_:
                where = "is in no finished fold" if row is None else f"was tested in fold {row['fold']}, not {self.fold_}"
                raise EmoregError(f"replay: segment {s.segment_id!r} {where} of {run}; replay predicts the test "
                                  "segments of the run's finished folds only (not inner splits: no calibrate:)")
            if s.label is not None and row.get("gold") != s.label:
                raise EmoregError(f"replay: segment {s.segment_id!r} is labelled {s.label!r} here and "
                                  f"{row.get('gold')!r} in {run}; was the run made from other data?")
            missing = [label for label in self.task.labels if label not in row["proba"]]
            if missing:
                raise EmoregError(f"replay: {run} has no probability of {', '.join(missing)}: another task")
            out[i] = [row["proba"][label] for label in self.task.labels]
        return out

    def describe(self) -> dict:
        return {"replayed": str(self._param("run")), "fold": getattr(self, "fold_", None)}
