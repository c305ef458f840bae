"""The one protocol every classifier follows, and the shared base of the built-in ones.

scikit-learn habits: ``__init__`` only stores parameters, ``fit`` returns ``self``, learned state
ends in ``_``, and ``predict_proba`` before ``fit`` raises a clear error. Models take segments,
not prompts: a text model renders prompts itself, inside the fold, from ``prompt``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..atomic import atomic_write_text
from ..errors import EmoregError
from ..prompts import PromptConfig, approx_token_count, render_prompt
from ..segments import Segment
from ..tasks import Task


class NotFittedError(EmoregError):
    pass


def prompt_counter(config: PromptConfig, own: Callable[[str], int] | None = None) -> Callable[[str], int]:
    """What ``config.max_tokens`` counts (``PromptConfig.count``), for a model whose own token count
    is ``own`` (an LLM's tokenizer; None: the model has none, words and punctuation count)."""
    if config.count == "model":
        return own or approx_token_count
    if config.count == "words":
        return approx_token_count
    return _tokenizer_count(config.count)


def count_problem(count: str) -> str | None:
    """Why ``prompt.count`` names nothing that can count (None when it can): model, words, a short
    model name, an existing model folder or a hub id (org/name) are accepted; a typo is caught when
    the config is read, not when the first prompt is rendered."""
    from .llm.loading import SHIPPED

    if count in ("model", "words") or count in SHIPPED or Path(count).expanduser().is_dir():
        return None
    if re.fullmatch(r"[\w.-]+/[\w.-]+", count) and not Path(count).expanduser().exists():
        return None  # a hub id, tried when the tokenizer is first needed
    return (f"expected model, words, a short model name ({', '.join(SHIPPED)}), a model folder or a hub id, "
            f"found {count!r}")


@functools.cache
def _tokenizer_count(name: str) -> Callable[[str], int]:
    from transformers import AutoTokenizer

    from .llm.loading import resolve

    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve(name))
    except (OSError, ValueError) as exc:
        raise EmoregError(f"prompt count {name!r}: no tokenizer loads from it ({str(exc)[:200]}); set count to model, "
                          "words, a short model name (smollm2-135m, gemma3-270m, qwen2.5-coder-1.5b) or a model "
                          "folder") from None
    return token_counter(tokenizer)


def token_counter(tokenizer) -> Callable[[str], int]:
    """A Hugging Face tokenizer's token count of a text (no special tokens added; counting a text
    longer than the model reads is no error, so no warning about it)."""
    return lambda text: len(tokenizer(text, add_special_tokens=False, verbose=False).input_ids)


FITTED_FILE = "fitted.skops"


def load_fitted(path: Path) -> dict[str, Any]:
    """A ``fitted.skops`` file, refused before anything in it is built if it names a type skops
    does not trust by default (scikit-learn's estimators, numpy and plain containers are trusted;
    a function or another package's class, which a crafted file would need to run code, is not)."""
    import skops.io

    untrusted = sorted(skops.io.get_untrusted_types(file=path))
    if untrusted:
        raise EmoregError(f"{path}: holds types that emoreg does not load ({', '.join(untrusted[:5])}); a model "
                          "folder written by emoreg has none, so this file was made or changed elsewhere. Train the "
                          "model again with `emoreg train`")
    state = skops.io.load(path)
    if not isinstance(state, dict):
        raise EmoregError(f"{path}: expected the fitted state as a mapping, found {type(state).__name__}")
    return state


def trusted_pickle(path: Path) -> Any:
    """A pickle written by emoreg 0.1 (``model.joblib``). Loading a pickle runs whatever code it
    names, so it loads only when ``EMOREG_TRUST_PICKLE=1`` says the folder is trusted."""
    import os

    if os.environ.get("EMOREG_TRUST_PICKLE") != "1":
        raise EmoregError(f"{path.parent}: saved by an earlier emoreg as a pickle ({path.name}), which runs code when "
                          "it is loaded, so emoreg does not load it by itself. Train the model again (`emoreg train`, "
                          "or rerun `emoreg evaluate`) to save it in the safe format; if you made this folder "
                          "yourself and trust it, load it once with EMOREG_TRUST_PICKLE=1 and save it again")
    import joblib

    return joblib.load(path)


class SegmentClassifier:
    """Base of the built-in classifiers: label checks, ``predict``, save and load.

    Subclasses set ``name`` and implement ``_fit(segments, y)`` (``y``: label indices) and
    ``_predict_proba(segments)``.
    """

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}  # every parameter the model takes, with its default
    rules: ClassVar[dict[str, Any]] = {}  # what a parameter's value may be (models/rules.py), checked at config read

    def __init__(self, task: Task, prompt: PromptConfig = PromptConfig(), seed: int = 0, **params: Any):
        self.task = task
        self.prompt = prompt
        self.seed = seed
        self.params = params

    # -- the protocol
    def fit(self, segments: Sequence[Segment]) -> SegmentClassifier:
        """Fit on ``segments``: ``Segment`` objects, dicts of the segment file's fields, or a pandas
        DataFrame of them (validated as a file is)."""
        from ..segment_files import as_segments

        segments = as_segments(segments, self.task, "fit(segments)")
        if not segments:
            raise EmoregError(f"{self.name}: cannot fit on zero segments")
        unlabelled = [s.segment_id for s in segments if s.label is None]
        if unlabelled:
            raise EmoregError(f"{self.name}: {len(unlabelled)} training segment(s) have no label, "
                              f"e.g. {unlabelled[0]!r}")
        y = np.array([self.task.index(s.label) for s in segments])
        self.labels_ = self.task.labels
        self.fit_subjects_ = sorted({s.subject_id for s in segments})
        self._fit(segments, y)
        return self

    def predict_proba(self, segments: Sequence[Segment]) -> np.ndarray:
        if not hasattr(self, "labels_"):
            raise NotFittedError(f"{self.name}: call fit() before predict_proba() or predict()")
        from ..segment_files import as_segments

        segments = as_segments(segments, None, "predict_proba(segments)")  # labels are not needed to predict
        if not segments:
            return np.zeros((0, len(self.task.labels)))
        proba = np.asarray(self._predict_proba(segments), dtype=float)
        assert proba.shape == (len(segments), len(self.labels_)), proba.shape
        return proba

    def predict(self, segments: Sequence[Segment]) -> list[str]:
        proba = self.predict_proba(segments)
        return [self.labels_[i] for i in proba.argmax(axis=1)]

    def save(self, folder: str | Path) -> Path:
        """``model.json`` (kind, parameters, task, prompt, label order) and ``fitted.skops``: what
        ``fit`` learned, in skops' format, which loads without running code (``load_fitted``)."""
        import skops.io

        if not hasattr(self, "labels_"):
            raise NotFittedError(f"{self.name}: fit the model before saving it")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{FITTED_FILE}.tmp"
        skops.io.dump(self.fitted_state(), tmp)
        tmp.replace(folder / FITTED_FILE)
        self._write_spec(folder)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> SegmentClassifier:
        folder = Path(folder)
        if not (folder / FITTED_FILE).is_file() and (folder / "model.joblib").is_file():  # saved by emoreg 0.1
            return trusted_pickle(folder / "model.joblib")
        model, spec = cls._from_spec(folder)
        model.restore(load_fitted(folder / FITTED_FILE))
        model.labels_ = tuple(spec["labels"])
        return model

    def fitted_state(self) -> dict[str, Any]:
        """What ``fit`` learned, for ``save``: every attribute ending in ``_`` but the label order
        (in model.json). A model whose learned state is not arrays, scikit-learn estimators and plain
        values converts it here and back in ``restore``."""
        return {k: v for k, v in vars(self).items() if k.endswith("_") and k not in ("labels_", "fit_subjects_")}

    def restore(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def _write_spec(self, folder: Path, **extra: Any) -> None:
        """``model.json``: kind, parameters, seed, label order, task and prompt config as plain
        fields, and ``extra``."""
        state = SegmentClassifier.__getstate__(self)
        params = extra.pop("params", self.params)  # a model that chose settings in fit saves the chosen ones
        atomic_write_text(folder / "model.json", json.dumps({
            "model": self.name, "params": params, "seed": self.seed, "labels": list(self.labels_),
            "task": state["task"] | {"labels": list(self.task.labels)},
            "prompt": state["prompt"] | {"sources": list(self.prompt.sources)}, **extra,
        }, indent=2) + "\n")

    @classmethod
    def _from_spec(cls, folder: Path) -> tuple[SegmentClassifier, dict[str, Any]]:
        """A fresh model from the ``model.json`` that ``_write_spec`` wrote, and that spec."""
        spec = json.loads((folder / "model.json").read_text())
        task = Task(**{**spec["task"], "labels": tuple(spec["task"]["labels"])})
        model = cls(task=task, prompt=PromptConfig(**spec["prompt"]), seed=spec["seed"], **spec["params"])
        return model, spec

    def __getstate__(self) -> dict[str, Any]:
        """Pickle-friendly state: the task and prompt config as plain fields."""
        state = dict(self.__dict__)
        state["task"] = {f: getattr(self.task, f) for f in ("name", "labels", "question", "notes")} | {
            "definitions": dict(self.task.definitions)}
        state["prompt"] = {"template": self.prompt.template, "sources": self.prompt.sources,
                           "max_tokens": self.prompt.max_tokens, "count": self.prompt.count,
                           "feature_thresholds": dict(self.prompt.feature_thresholds),
                           "behaviour_phrases": dict(self.prompt.behaviour_phrases)}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        state["task"] = Task(**state["task"])
        state["prompt"] = PromptConfig(**state["prompt"])
        self.__dict__.update(state)

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        """Every problem of ``params`` at once: unknown names, values that break a rule, settings
        that do not go together (``conflicts``)."""
        from .rules import broken

        bad = broken(cls.rules, params)
        # combinations are judged with every broken or unknown value at its default, so that one
        # round lists them all and a conflict check never meets a value of the wrong kind
        valid = {k: v for k, v in params.items() if k in cls.defaults and k not in bad}
        problems = list(bad.values()) + cls.conflicts(valid)
        unknown = sorted(set(params) - set(cls.defaults))
        if unknown:
            valid = ", ".join(sorted(cls.defaults)) or "none"
            problems.insert(0, f"has no parameter(s) {', '.join(unknown)} (valid: {valid})")
        if problems:  # "model 'x' has no parameter(s) ..." or "model 'x': lr must be ..."
            joint = " " if unknown else ": "
            raise EmoregError(f"model {cls.name!r}{joint}" + "; ".join(problems))

    @classmethod
    def conflicts(cls, params: dict[str, Any]) -> list[str]:
        """Settings that are each valid but do not go together, in words (none by default)."""
        return []

    @classmethod
    def inputs(cls, params: dict[str, Any], sources: Sequence[str]) -> str:
        """What the model reads, in words, for reports (e.g. "utterance" or a list of sources)."""
        text = params.get("text", cls.defaults.get("text"))
        if text == "utterance":
            return "utterance"
        return ", ".join(sources)

    # -- helpers for subclasses
    def _param(self, key: str) -> Any:
        return self.params.get(key, self.defaults[key])

    def _fit(self, segments: list[Segment], y: np.ndarray) -> None:
        raise NotImplementedError

    def _predict_proba(self, segments: list[Segment]) -> np.ndarray:
        raise NotImplementedError

    def _texts(self, segments: Sequence[Segment], mode: str) -> list[str]:
        """``prompt``: the rendered prompt; ``utterance``: the current turn's text only."""
        if mode == "prompt":
            count = prompt_counter(self.prompt)
            return [render_prompt(s, self.task, self.prompt, count_tokens=count).text for s in segments]
        if mode == "utterance":
            return [s.transcript[-1].text if s.transcript else "" for s in segments]
        raise EmoregError(f"{self.name}: text must be 'prompt' or 'utterance', got {mode!r}")

    def _full_columns(self, proba: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """Spread columns of the classes seen in training over all labels (unseen: 0)."""
        out = np.zeros((proba.shape[0], len(self.task.labels)))
        out[:, classes] = proba
        return out
