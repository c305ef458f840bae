"""TF-IDF of the text + class-balanced logistic regression (scikit-learn)."""

from __future__ import annotations

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from .base import SegmentClassifier
from .rules import choice, or_null, positive, whole


class TfidfLogReg(SegmentClassifier):
    """Parameters: ``text`` (``prompt`` or ``utterance``), ``ngram_max`` (1-2), ``min_df``,
    ``C`` (inverse regularisation), ``class_weight`` (``balanced`` or none)."""

    name = "tfidf"
    defaults = {"text": "prompt", "ngram_max": 2, "min_df": 2, "C": 1.0, "class_weight": "balanced",
                "max_features": 50000}
    rules = {"text": choice("prompt", "utterance"), "ngram_max": whole(1), "min_df": whole(1), "C": positive(),
             "class_weight": choice("balanced", None), "max_features": or_null(whole(1))}

    def _fit(self, segments, y):
        self.vectorizer_ = TfidfVectorizer(
            ngram_range=(1, self._param("ngram_max")), min_df=self._param("min_df"),
            sublinear_tf=True, max_features=self._param("max_features"))
        X = self.vectorizer_.fit_transform(self._texts(segments, self._param("text")))
        self.model_ = LogisticRegression(C=self._param("C"), class_weight=self._param("class_weight"),
                                         max_iter=2000, random_state=self.seed)
        self.model_.fit(X, y)

    def _predict_proba(self, segments):
        X = self.vectorizer_.transform(self._texts(segments, self._param("text")))
        return self._full_columns(self.model_.predict_proba(X), self.model_.classes_)
