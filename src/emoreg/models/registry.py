"""The registry of models by name, and making or loading one by name. Filled by ``emoreg.models``
(which imports every model); composite models (ensemble, calibrated, temporal) build their members
through it, so no model module imports the package that lists it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import EmoregError
from ..prompts import PromptConfig
from ..tasks import Task
from .base import SegmentClassifier

MODELS: dict[str, type[SegmentClassifier]] = {}  # name -> class; filled by emoreg/models/__init__.py


def load_model(folder: str | Path) -> SegmentClassifier:
    """A model saved with ``save(folder)``, whatever its kind."""
    folder = Path(folder)
    try:
        spec = json.loads((folder / "model.json").read_text())
    except (OSError, ValueError):
        raise EmoregError(f"{folder} holds no saved emoreg model (model.json is missing or unreadable)") from None
    if not isinstance(spec, dict) or spec.get("model") not in MODELS:
        kind = spec.get("model") if isinstance(spec, dict) else None
        raise EmoregError(f"{folder}: unknown model kind {kind!r} in model.json")
    from .sealing import verify

    verify(folder, spec)
    try:
        model = MODELS[spec["model"]].load(folder)
        model.folder_ = folder  # where it came from (its MODEL_CARD.md lives there)
        return model
    except EmoregError:
        raise
    except Exception as exc:  # a file of the folder is missing, cut short or not what its name says
        raise EmoregError(f"{folder}: the saved {spec['model']} model cannot be loaded ({type(exc).__name__}: "
                          f"{str(exc)[:200]}); the folder is damaged or incomplete: train it again with "
                          "`emoreg train`") from None


def make_model(name: str, task: Task, prompt: PromptConfig, seed: int, params: dict[str, Any]) -> SegmentClassifier:
    """A fresh, unfitted model; unknown names and parameters are errors that list the valid ones."""
    if name not in MODELS:
        raise EmoregError(f"unknown model {name!r}; choose from: {', '.join(sorted(MODELS))}")
    if not isinstance(params, dict):
        raise EmoregError(f"model {name!r}: params must be a mapping of parameter names to values, found {params!r}")
    cls = MODELS[name]
    cls.check_params(params)
    return cls(task=task, prompt=prompt, seed=seed, **params)
