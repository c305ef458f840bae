"""A discrete Bayesian network over behaviour variables and the strategy, as in the study.

Variables are built from the sources a config selects, inside each fold from training subjects
only (bins, kept levels, kept behaviours):

* ``context``: the situation text as a category (the ``max_levels`` most frequent, else "(other)");
* ``person``: each factor, numbers cut at training quantiles into ``bins`` bins;
* ``nonverbal``: ``nv_<behaviour>`` yes/no for the ``top_behaviours`` most frequent behaviour
  codes, and each numeric feature binned;
* ``introspection``: ``intro_<code>`` yes/no when the text holds a keyword of that code
  (``introspection_codes: {code: [keywords]}``);
* corpus facts in ``meta``, each assigned to the source it belongs to
  (``meta_variables: {previous_therapist_behaviour: history, position: context}``).

A missing value is its own state ("(missing)"). The structure is ``naive`` (the strategy is the
parent of every variable), ``learned`` (hill climbing with BIC from the naive start, on the
training fold) or a YAML file of expert edges (``edges: [[parent, child], ...]``; the strategy
node is called ``strategy``). Parameters: BDeu-smoothed counts (pgmpy); inference: variable
elimination. With ``class_weight: balanced`` (the default, like the logistic-regression
baselines) the posterior is divided by the training class frequencies and renormalised, which
is the decision a model trained on balanced classes would make; ``none`` keeps the posterior. A
network whose learned structure leaves the strategy unconnected has no evidence to weigh and
predicts the training prior (the majority class), not a uniform tie.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from ..errors import EmoregError, NothingToReadError
from ..segments import Segment
from .base import SegmentClassifier
from .rules import choice, positive, text, whole

LABEL = "strategy"
MISSING, OTHER = "(missing)", "(other)"  # parenthesised: never a real level


class _Variable:
    """One discrete variable: where to read it in a segment (``kind``, ``key``) and its states."""

    def __init__(self, name: str, kind: str, key: Any, numeric: bool):
        self.name, self.kind, self.key, self.numeric = name, kind, key, numeric

    def read(self, s: Segment) -> Any:
        if self.kind == "context":
            return s.context
        if self.kind == "person":
            return (s.person or {}).get(self.key)
        if self.kind == "event":
            return "yes" if s.nonverbal and any(e.behaviour == self.key for e in s.nonverbal.events) else "no"
        if self.kind == "feature":
            return s.nonverbal.features.get(self.key) if s.nonverbal else None
        if self.kind == "introspection":
            if not s.introspection:
                return None
            return "yes" if any(w in s.introspection.lower() for w in self.key) else "no"
        return s.meta.get(self.key)  # meta

    def fit(self, segments: list[Segment], bins: int, max_levels: int) -> _Variable:
        values = [self.read(s) for s in segments]
        present = [v for v in values if v is not None]
        if self.numeric:
            edges = np.unique(np.quantile(np.array(present, dtype=float), np.linspace(0, 1, bins + 1)[1:-1])) \
                if present else np.array([])
            self.edges = edges
            self.states = [f"q{i}" for i in range(len(edges) + 1)] + [MISSING]
        else:
            counts = Counter(str(v) for v in present)
            self.levels = [level for level, _ in counts.most_common(max_levels)]
            self.states = self.levels + [OTHER, MISSING]
        return self

    def state(self, segment: Segment) -> str:
        value = self.read(segment)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return MISSING
        if self.numeric:
            return f"q{int(np.searchsorted(self.edges, float(value), side='right'))}"
        return str(value) if str(value) in self.levels else OTHER


def _ordered_search(frame: pd.DataFrame, states: dict):
    """pgmpy's hill climbing with its candidate moves in a fixed order. pgmpy builds the edges it
    may add from a ``set``, whose order follows ``PYTHONHASHSEED``, and takes the first of the moves
    that tie on score; ties are common (BIC scores X -> Y and Y -> X alike), so the learned
    structure, and the predictions, differed between processes. Sorted, the first best move is
    the same in every process."""
    from pgmpy.estimators import HillClimbSearch

    class OrderedHillClimb(HillClimbSearch):
        def _legal_operations(self, *args, **kwargs):
            moves = list(super()._legal_operations(*args, **kwargs))
            return iter(sorted(moves, key=lambda m: (m[0][0], str(m[0][1][0]), str(m[0][1][1]))))

    return OrderedHillClimb(frame, state_names=states)


def _number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class BayesNet(SegmentClassifier):
    name = "bayesnet"
    defaults = {"structure": "learned", "bins": 3, "max_levels": 8, "top_behaviours": 10,
                "meta_variables": {}, "introspection_codes": {}, "equivalent_sample_size": 5.0,
                "max_indegree": 3, "class_weight": "balanced"}
    rules = {"structure": text(), "bins": whole(2), "max_levels": whole(2), "top_behaviours": whole(0),
             "meta_variables": ("a mapping of variable name to meta key", lambda v: isinstance(v, dict)),
             "introspection_codes": ("a mapping of code to a list of words", lambda v: isinstance(v, dict) and all(
                 isinstance(w, list) and all(isinstance(x, str) for x in w) for w in v.values())),
             "equivalent_sample_size": positive(), "max_indegree": whole(1), "class_weight": choice("balanced", None)}

    # -- variables
    def _candidates(self, segments: list[Segment]) -> list[_Variable]:
        sources = set(self.prompt.sources)
        out: list[_Variable] = []
        if "context" in sources:
            out.append(_Variable("context", "context", None, numeric=False))
        if "person" in sources:
            keys = sorted({k for s in segments if s.person for k in s.person})
            for key in keys:
                numeric = all(_number(s.person.get(key)) is not None for s in segments if s.person and key in s.person)
                out.append(_Variable(f"person_{key}", "person", key, numeric))
        if "nonverbal" in sources:
            # each segment's codes in sorted order: the tie order of most_common may not follow set order
            counts = Counter(code for s in segments if s.nonverbal
                             for code in sorted({e.behaviour for e in s.nonverbal.events}))
            for code, _ in counts.most_common(self._param("top_behaviours")):
                out.append(_Variable(f"nv_{code}", "event", code, numeric=False))
            names = sorted({k for s in segments if s.nonverbal for k in s.nonverbal.features})
            for key in names:
                out.append(_Variable(f"feature_{key}", "feature", key, numeric=True))
        if "introspection" in sources:
            for code, words in self._param("introspection_codes").items():
                out.append(_Variable(f"intro_{code}", "introspection", [w.lower() for w in words], numeric=False))
        for key, source in self._param("meta_variables").items():
            if source in sources or (source == "transcript" and {"history", "utterance"} & sources):
                numeric = all(_number(s.meta.get(key)) is not None for s in segments if s.meta.get(key) is not None)
                out.append(_Variable(f"meta_{key}", "meta", key, numeric))
        return out

    def _frame(self, segments: list[Segment]) -> pd.DataFrame:
        return pd.DataFrame({v.name: [v.state(s) for s in segments] for v in self.variables_})

    # -- fit / predict
    def _fit(self, segments, y):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # pgmpy's own deprecation notices
            from pgmpy.models import DiscreteBayesianNetwork
            from pgmpy.parameter_estimator import DiscreteBayesianEstimator

        variables = [v.fit(segments, self._param("bins"), self._param("max_levels")) for v in self._candidates(segments)]
        self.variables_ = [v for v in variables if len({v.state(s) for s in segments}) > 1]  # constant: no information
        if not self.variables_:
            raise NothingToReadError(f"bayesnet: the sources {', '.join(self.prompt.sources)} give no variable that "
                              "varies in this corpus; add sources, meta_variables or introspection_codes")
        frame = self._frame(segments)
        frame[LABEL] = [self.task.labels[i] for i in y]
        self.seen_ = sorted(set(y.tolist()))  # labels never seen in training get no probability
        states = {v.name: v.states for v in self.variables_} | {LABEL: [self.task.labels[i] for i in self.seen_]}
        naive = [(LABEL, v.name) for v in self.variables_]
        structure = self._param("structure")
        logging.getLogger("pgmpy").setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if structure == "naive":
                edges = naive
            elif structure == "learned":
                from pgmpy.base import DAG

                start = DAG(naive)
                start.add_nodes_from(frame.columns)
                search = _ordered_search(frame, states)
                dag = search.estimate(scoring_method="bic-d", start_dag=start,
                                      max_indegree=self._param("max_indegree"), show_progress=False)
                edges = sorted(dag.edges())
            else:
                edges = self._expert_edges(structure)
            model = DiscreteBayesianNetwork(edges)
            model.add_nodes_from(frame.columns)
            estimator = DiscreteBayesianEstimator(state_names=states, prior_type="BDeu",
                                                  equivalent_sample_size=self._param("equivalent_sample_size"))
            model.fit(frame, estimator=estimator)
        self.edges_ = [list(e) for e in edges]
        counts = np.bincount(y, minlength=len(self.task.labels)).astype(float)[self.seen_]
        self.priors_ = counts / counts.sum()
        self.model_ = model
        self._cache = {}

    def _expert_edges(self, path: str) -> list[tuple[str, str]]:
        from ..yamlio import read_yaml

        spec = read_yaml(path, "bayesnet structure file")
        edges = spec.get("edges") if isinstance(spec, dict) else None
        if not isinstance(edges, list) or not all(isinstance(e, list) and len(e) == 2 for e in edges):
            raise EmoregError(f"{path}: expected `edges: [[parent, child], ...]`")
        names = {v.name for v in self.variables_} | {LABEL}
        unknown = sorted({n for e in edges for n in e if n not in names})
        if unknown:
            raise EmoregError(f"{path}: unknown variable(s) {', '.join(unknown)}; this fold's variables are "
                              f"{', '.join(sorted(names))}")
        return [tuple(e) for e in edges]

    def _predict_proba(self, segments):
        from pgmpy.inference import VariableElimination

        if not hasattr(self, "_cache"):
            self._cache = {}
        infer = VariableElimination(self.model_)
        frame = self._frame(segments)
        blanket = set(self.model_.get_markov_blanket(LABEL))
        columns = [c for c in frame.columns if c in blanket]
        out = np.zeros((len(segments), len(self.seen_)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i, row in enumerate(frame[columns].itertuples(index=False, name=None)):
                if row not in self._cache:
                    evidence = dict(zip(columns, row))
                    factor = infer.query([LABEL], evidence=evidence, show_progress=False)
                    order = [factor.state_names[LABEL].index(self.task.labels[i]) for i in self.seen_]
                    self._cache[row] = np.asarray(factor.values)[order]
                out[i] = self._cache[row]
        if self._param("class_weight") == "balanced" and blanket:  # as if every class were equally frequent;
            # without evidence (no edge reaches the strategy) the posterior is the prior and stays so
            out = out / self.priors_
            out /= out.sum(axis=1, keepdims=True)
        return self._full_columns(out, np.array(self.seen_))

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_cache", None)  # inference results, rebuilt on demand
        return state

    def fitted_state(self) -> dict[str, Any]:
        """The variables (where each is read, its states, bin edges, kept levels) and the network's
        conditional probability tables as plain values and arrays (no pgmpy objects in the file)."""
        variables = [{"name": v.name, "kind": v.kind, "key": v.key, "numeric": v.numeric, "states": v.states,
                      **({"edges": np.asarray(v.edges, dtype=float)} if v.numeric else {"levels": v.levels})}
                     for v in self.variables_]
        cpds = [{"variable": c.variable, "evidence": list(c.variables[1:]), "values": c.get_values(),
                 "state_names": {k: list(v) for k, v in c.state_names.items()}} for c in self.model_.get_cpds()]
        return {"variables": variables, "cpds": cpds, "edges": self.edges_, "seen": self.seen_,
                "priors": self.priors_}

    def restore(self, state: dict[str, Any]) -> None:
        from pgmpy.factors.discrete import TabularCPD
        from pgmpy.models import DiscreteBayesianNetwork

        self.variables_ = []
        for v in state["variables"]:
            variable = _Variable(v["name"], v["kind"], v["key"], v["numeric"])
            variable.states = list(v["states"])
            if v["numeric"]:
                variable.edges = np.asarray(v["edges"], dtype=float)
            else:
                variable.levels = list(v["levels"])
            self.variables_.append(variable)
        self.edges_ = [list(e) for e in state["edges"]]
        self.seen_ = [int(i) for i in state["seen"]]
        self.priors_ = np.asarray(state["priors"], dtype=float)
        model = DiscreteBayesianNetwork([tuple(e) for e in self.edges_])
        model.add_nodes_from([v.name for v in self.variables_] + [LABEL])
        names = {c["variable"]: c["state_names"][c["variable"]] for c in state["cpds"]}
        model.add_cpds(*[TabularCPD(c["variable"], len(names[c["variable"]]), np.asarray(c["values"]),
                                    evidence=c["evidence"] or None,
                                    evidence_card=[len(names[e]) for e in c["evidence"]] or None,
                                    state_names=c["state_names"]) for c in state["cpds"]])
        model.check_model()
        self.model_ = model
        self._cache = {}

    def describe(self) -> dict[str, Any]:
        return {"variables": {v.name: v.states for v in self.variables_}, "edges": self.edges_}
