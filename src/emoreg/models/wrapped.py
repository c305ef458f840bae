"""The shape every model around another model shares (``calibrate`` and ``decode`` build them).

A wrapped model names its inner model by ``model`` and ``params``; its own options are the
other keys (``own``), checked by ``check_own`` when the config is read. It is saved as its inner
model under ``model/`` plus its fitted numbers in ``model.json`` (``fitted_state`` / ``restore``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from ..errors import EmoregError
from .base import NotFittedError, SegmentClassifier
from .registry import MODELS, load_model, make_model


class Wrapped(SegmentClassifier):
    own: ClassVar[tuple[str, ...]] = ()
    checkpoint_dir: Path | None = None  # set by the runner; handed to the inner model(s)

    @classmethod
    def check_own(cls, options: dict[str, Any]) -> None:
        raise NotImplementedError

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        super().check_params(params)
        cls.check_own({k: v for k, v in params.items() if k in cls.own})
        if params.get("model") not in MODELS or params.get("model") == cls.name:
            raise EmoregError(f"{cls.name}: unknown model {params.get('model')!r}")
        MODELS[params["model"]].check_params(params.get("params") or {})

    @classmethod
    def inputs(cls, params, sources):
        return MODELS[params["model"]].inputs(params.get("params") or {}, sources)

    def _inner(self, subfolder: str | None = None) -> SegmentClassifier:
        """A fresh inner model; its checkpoints go to ``subfolder`` of this model's, if any."""
        model = make_model(self._param("model"), self.task, self.prompt, self.seed, self._param("params") or {})
        if hasattr(model, "checkpoint_dir") and self.checkpoint_dir is not None:
            model.checkpoint_dir = Path(self.checkpoint_dir) / subfolder if subfolder else self.checkpoint_dir
        return model

    def _fitted(self):
        if not hasattr(self, "model_"):
            raise NotFittedError(f"{self.name}: call fit() first")
        return self.model_

    # what this wrapper learned, as JSON, and back
    def fitted_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def restore(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def facts(self) -> dict[str, Any]:
        """What ``describe()`` adds to the inner model's facts."""
        return {}

    def describe(self) -> dict[str, Any]:
        inner = self.model_.describe() if hasattr(getattr(self, "model_", None), "describe") else {}
        return inner | self.facts()

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        self._fitted().save(folder / "model")
        self._write_spec(folder, fitted=self.fitted_state())
        return folder

    @classmethod
    def load(cls, folder: str | Path):
        folder = Path(folder)
        model, spec = cls._from_spec(folder)
        model.model_ = load_model(folder / "model")
        model.restore(spec["fitted"])
        model.labels_ = tuple(spec["labels"])
        return model

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("model_", None)
        return state
