"""Chance baselines: the majority class, and random draws from the training label frequencies."""

from __future__ import annotations

import hashlib

import numpy as np

from .base import SegmentClassifier


class Majority(SegmentClassifier):
    """Always the most frequent training label (probability 1)."""

    name = "majority"

    @classmethod
    def inputs(cls, params, sources):
        return "training labels only"

    def _fit(self, segments, y):
        counts = np.bincount(y, minlength=len(self.task.labels))
        self.class_ = int(counts.argmax())

    def _predict_proba(self, segments):
        proba = np.zeros((len(segments), len(self.task.labels)))
        proba[:, self.class_] = 1.0
        return proba


class StratifiedRandom(SegmentClassifier):
    """A label drawn at random with the training frequencies, as a one-hot probability.

    The draw for a segment depends only on the seed and the segment id, so it is the same
    whatever order or batch the segment comes in.
    """

    name = "stratified"
    inputs = Majority.inputs

    def _fit(self, segments, y):
        counts = np.bincount(y, minlength=len(self.task.labels))
        self.priors_ = counts / counts.sum()

    def _predict_proba(self, segments):
        proba = np.zeros((len(segments), len(self.task.labels)))
        for i, s in enumerate(segments):
            digest = hashlib.sha256(f"{self.seed}:{s.segment_id}".encode()).digest()
            rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
            proba[i, rng.choice(len(self.priors_), p=self.priors_)] = 1.0
        return proba
