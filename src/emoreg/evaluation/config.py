"""The configuration of one evaluation: corpus, task, prompt, model, split, seed.

A YAML file such as ``configs/baselines/annomi-tfidf.yaml``::

    corpus: annomi                # annomi, deep-example, a .jsonl file or a CSV mapping .yaml
    task: annomi-client-talk      # optional when the corpus has its own task
    model: tfidf                  # see emoreg.models.MODELS
    params: {text: prompt}        # the model's parameters (unknown ones are errors)
    prompt: {sources: [transcript, context], max_tokens: 512, template: emoreg-v1}
    split: {kind: group-kfold, folds: 5}   # or {kind: loso}
    seed: 0

Every problem (unknown keys at any level, wrong types) is reported at once.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EmoregError, Problem, ValidationError
from ..prompts import PROMPT_SOURCES, TEMPLATES, PromptConfig

SPLITS = ("group-kfold", "loso")
TOP_KEYS = {"corpus": str, "task": (str, type(None)), "model": str, "params": dict, "prompt": dict,
            "split": dict, "seed": int, "name": (str, type(None)), "save_models": bool,
            "calibrate": (str, dict, type(None)), "decode": (dict, type(None))}
PROMPT_KEYS = {"sources": (list, str), "max_tokens": (int, type(None)), "count": str, "template": str,
               "feature_thresholds": dict, "behaviour_phrases": dict}
SPLIT_KEYS = {"kind": str, "folds": int, "only": list, "within_fold": int, "seed": int}


@dataclass(frozen=True)
class EvalConfig:
    """One model, one protocol.

    Attributes:
        corpus: a corpus name or path (paths are taken relative to the config file).
        task: label scheme; None: the corpus's own.
        model: a name in ``emoreg.models.MODELS``.
        params: the model's parameters.
        prompt: ``PromptConfig`` fields (sources, max_tokens, template, ...).
        split: ``{"kind": "group-kfold", "folds": 5}`` or ``{"kind": "loso"}``; folds group
            segments by subject, so no subject is ever in training and test at once.
            ``only: [0, 2]`` runs just those folds of the split (an evaluation on the subjects
            of those folds, for models too slow to run them all; reports say so).
            ``within_fold: K`` makes a validation split for choosing settings: the subjects of
            fold K's test part are removed from the corpus first, and the split is made anew on
            the rest (same kind, fold count and seed), so nothing chosen on it has seen them.
            ``seed: S`` seeds the fold assignment alone (default: the top-level seed), so runs
            with different model seeds can share folds: ``seed: 1`` with ``split: {seed: 0}``
            trains on the folds of ``seed: 0`` with the models seeded 1 (a seed spread).
        seed: seeds the models (initialisation, sampling, batch order) and, unless ``split.seed``
            is given, the fold assignment.
        name: a label for reports (default: the run folder's name).
        save_models: also save every fold's fitted model (``folds/fold-NN-model/``; for the LLM a
            standard PEFT adapter).
        calibrate: ``temperature``, ``vector``, ``none`` or a mapping {method, decide, inner_share,
            refit}: the model's probabilities calibrated (and with ``decide: macro-f1`` its
            decisions tuned) on an inner split of each fold's training subjects
            (``emoreg.models.calibrated``).
        decode: ``{temporal: filter|smooth|none, emission, alpha}``: the labels of a session decoded
            together by a hidden Markov model fitted on the training subjects
            (``emoreg.models.temporal``).
    """

    corpus: str
    task: str | None = None
    model: str = "tfidf"
    params: dict[str, Any] = field(default_factory=dict)
    prompt: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=lambda: {"kind": "group-kfold", "folds": 5})
    seed: int = 0
    name: str | None = None
    save_models: bool = False
    calibrate: Any = None
    decode: Any = None

    @property
    def split_seed(self) -> int:
        """The seed of the fold assignment: ``split.seed``, else the top-level seed."""
        return self.split.get("seed", self.seed)

    def prompt_config(self) -> PromptConfig:
        return PromptConfig(**self.prompt)

    def build_model(self, task):
        """A fresh model of this config (wrapped in ``Calibrated`` when ``calibrate`` is on)."""
        from ..models import make_model
        from ..models.calibrated import normalise_spec
        from ..models.temporal import normalise_spec as temporal_spec

        name, params = self.model, self.params
        spec = normalise_spec(self.calibrate)
        if spec is not None:
            name, params = "calibrated", {"model": name, "params": params, **spec}
        temporal = temporal_spec(self.decode)
        if temporal is not None:
            name, params = "temporal", {"model": name, "params": params, **temporal}
        return make_model(name, task, self.prompt_config(), self.seed, params)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check(data: dict, spec: dict, prefix: str, where: str, problems: list[Problem]) -> None:
    for key, value in data.items():
        if key not in spec:
            problems.append(Problem(where, prefix + key, f"unknown key (valid: {', '.join(spec)})"))
        elif not isinstance(value, spec[key]) or (spec[key] is int and isinstance(value, bool)):
            kinds = spec[key] if isinstance(spec[key], tuple) else (spec[key],)
            names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
            problems.append(Problem(where, prefix + key, f"expected {names}, found {value!r}"))


def _source_list(sources: list | str) -> list[str]:
    """``sources`` as a list: a comma-separated string (``--set prompt.sources=a,b``) split."""
    return [s.strip() for s in sources.split(",")] if isinstance(sources, str) else list(sources)


def seed_problem(seed: Any) -> str | None:
    """What is wrong with a seed, in words, or None: a whole number from 0 to 2**32 - 1."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 32:
        return f"expected a whole number from 0 to 2**32 - 1, found {seed!r}"
    return None


def prompt_from_dict(data: Any, where: str) -> PromptConfig:
    """A ``PromptConfig`` from a mapping of its fields, checked as a config's ``prompt`` is."""
    if not isinstance(data, dict):
        raise ValidationError(where, [Problem(where, None, "expected a PromptConfig or a mapping of its fields "
                                                           f"({', '.join(PROMPT_KEYS)}), found {data!r}")])
    problems: list[Problem] = []
    _check(data, PROMPT_KEYS, "", where, problems)
    if problems:
        raise ValidationError(where, problems)
    return PromptConfig(**{**data, "sources": _source_list(data.get("sources", list(PROMPT_SOURCES)))})


def config_from_dict(data: Any, where: str, base_dir: Path | None = None) -> EvalConfig:
    problems: list[Problem] = []
    if not isinstance(data, dict):
        raise ValidationError(where, [Problem(where, None, "expected a mapping of settings")])
    _check(data, TOP_KEYS, "", where, problems)
    if "corpus" not in data:
        problems.append(Problem(where, "corpus", "missing; name a corpus (annomi, deep-example or a file)"))
    prompt = data.get("prompt", {}) if isinstance(data.get("prompt", {}), dict) else {}
    split = data.get("split", {"kind": "group-kfold", "folds": 5})
    split = split if isinstance(split, dict) else {}
    _check(prompt, PROMPT_KEYS, "prompt.", where, problems)
    _check(split, SPLIT_KEYS, "split.", where, problems)
    if split.get("kind", "group-kfold") not in SPLITS:
        problems.append(Problem(where, "split.kind", f"expected one of {', '.join(SPLITS)}, found {split.get('kind')!r}"))
    if split.get("kind", "group-kfold") == "group-kfold" and isinstance(split.get("folds", 5), int) \
            and split.get("folds", 5) < 2:
        problems.append(Problem(where, "split.folds", "needs at least 2 folds"))
    for key, seed in (("seed", data.get("seed", 0)), ("split.seed", split.get("seed", 0))):
        if isinstance(seed, int) and seed_problem(seed):
            problems.append(Problem(where, key, seed_problem(seed)))
    only = split.get("only", [])
    if not isinstance(only, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in only):
        problems.append(Problem(where, "split.only", "expected a list of fold numbers, e.g. [0, 1]"))
    if prompt.get("template", TEMPLATES[0]) not in TEMPLATES:
        problems.append(Problem(where, "prompt.template", f"expected one of {', '.join(TEMPLATES)}"))
    count = prompt.get("count", "model")
    if isinstance(count, str):
        from ..models.base import count_problem

        problem = count_problem(count)
        if problem:
            problems.append(Problem(where, "prompt.count", problem))
    sources = prompt.get("sources", list(PROMPT_SOURCES))
    if split.get("kind") == "loso" and "folds" in split:
        problems.append(Problem(where, "split.folds", "loso makes one fold per subject; leave folds out, or use "
                                "kind: group-kfold to choose the number"))
    problems += _model_problems(data, where)
    if problems:  # every problem of the file at once, the model's parameters included
        raise ValidationError(where, problems)
    data = copy.deepcopy(data)
    if base_dir is not None:
        data = resolve_paths(data, base_dir)
    data["prompt"] = {**prompt, "sources": _source_list(sources)}
    data["split"] = {"kind": "group-kfold", "folds": 5} | split
    if data["split"]["kind"] == "loso":
        data["split"].pop("folds", None)
    config = EvalConfig(**data)
    try:
        config.prompt_config()
    except EmoregError as exc:
        raise ValidationError(where, [Problem(where, "prompt", str(exc))]) from None
    return config


def _model_problems(data: dict, where: str) -> list[Problem]:
    """What is wrong with the model's name and parameters and with calibrate and decode."""
    from ..models import MODELS
    from ..models.calibrated import normalise_spec
    from ..models.temporal import normalise_spec as temporal_spec

    problems = []
    model = data.get("model", EvalConfig.model)
    if isinstance(model, str) and model not in MODELS:
        problems.append(Problem(where, "model", f"unknown model {model!r}; choose from: {', '.join(sorted(MODELS))}"))
    elif isinstance(model, str) and isinstance(data.get("params", {}), dict):
        try:
            MODELS[model].check_params(data.get("params") or {})
        except EmoregError as exc:
            problems.append(Problem(where, "params", str(exc)))
    for key, check in (("calibrate", normalise_spec), ("decode", temporal_spec)):
        try:
            check(data.get(key))
        except EmoregError as exc:
            problems.append(Problem(where, key, str(exc)))
    return problems


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """``["params.C=0.5", "split.folds=10", "params.members.0.params.run=runs/x"]`` -> nested
    updates (a whole number indexes an existing list); values are parsed as YAML."""
    from ..yamlio import parse_yaml

    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise EmoregError(f"--set {item!r}: expected KEY=VALUE, e.g. --set params.C=0.5")
        key, raw = item.split("=", 1)
        value = parse_yaml(raw, f"--set {item!r}")
        node: Any = data
        parts = key.strip().split(".")
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if isinstance(node, list):
                if not (part.isdigit() and int(part) < len(node)):
                    raise EmoregError(f"--set {item!r}: {'.'.join(parts[:depth]) or 'the config'} is a list of "
                                      f"{len(node)}; index it with 0 to {len(node) - 1}, not {part!r}")
                part = int(part)
            elif not isinstance(node, dict):
                raise EmoregError(f"--set {item!r}: {'.'.join(parts[:depth])} is not a mapping or a list")
            if last:
                node[part] = value
            else:
                if isinstance(node, dict):
                    node.setdefault(part, {})
                node = node[part]
    return data


PATH_SUFFIXES = (".jsonl", ".json", ".yaml", ".yml", ".csv")


def _looks_like_path(value: Any) -> bool:
    return isinstance(value, str) and (value.lower().endswith(PATH_SUFFIXES) or "/" in value or "\\" in value)


def resolve_paths(data: dict, base: Path) -> dict:
    """The file paths a config names (corpus, task, a Bayesian network's structure), made absolute
    against the config's folder, as users of YAML-driven tools expect; names (annomi, deep-shame)
    and absolute paths stay as they are."""
    data = copy.deepcopy(data)

    def fix(holder: dict, key: str) -> None:
        value = holder.get(key)
        if _looks_like_path(value) and not Path(value).expanduser().is_absolute():
            holder[key] = str((base / value).resolve())

    fix(data, "corpus")
    fix(data, "task")
    if isinstance(data.get("params"), dict) and data.get("model") == "bayesnet":
        fix(data["params"], "structure")
    return data


def load_config(path: str | Path, overrides: list[str] = ()) -> EvalConfig:
    """An evaluation config from YAML: its own paths resolve against its folder; the values of
    ``overrides`` (``--set``) against the working directory, as anything typed on a command line."""
    path = Path(path)
    from ..yamlio import read_yaml

    data = read_yaml(path, "config")
    if isinstance(data, dict):
        data = resolve_paths(data, path.parent)
        if overrides:
            data = apply_overrides(data, list(overrides))
    return config_from_dict(data, str(path))
