"""The LLM classifier's settings: their defaults (one set per head), what each may be, and which
combinations cannot work, checked when a config is read (before anything is written), including
against the base model's layer count read without its weights. Each setting is a typed field,
with its docstring, of the dataclass of its concern (``LlmSettings``); ``DEFAULTS`` derives from
them, so a reader finds every setting, its default, its rule and its meaning in this one place."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ..rules import at_least, choice, or_null, positive, share, text, whole, whole_list
from .tokens import DEFAULT_SYSTEM


@dataclass(frozen=True)
class ModelSettings:
    """The base model and how it runs."""

    model: str = "smollm2-135m"
    """A short name (smollm2-135m, gemma3-270m, qwen2.5-coder-1.5b), a local folder or a hub id."""
    dtype: str = "auto"
    """auto (bf16 where the CPU or GPU is fast at it, else fp32), bf16 or fp32."""
    quantize_4bit: bool = False
    """Load the base weights in 4 bits (bitsandbytes, GPU only)."""
    system: str | None = DEFAULT_SYSTEM
    """The system message of the chat template (null: the model's own default)."""
    answer_prefix: str = ""
    """Text before every label in the answer (head lm). The answer's tokens decide what the model
    must learn: SmolLM2 spells "sustain" as "s" + "ustain", whose deciding first token starts
    countless words, while " sustain" (with a leading space) is one token; ``describe()`` records
    each label's answer tokens."""
    score_batch: int = 16
    """Prompts per batch when scoring and in the states pass."""
    decode: str = "score"
    """head lm: score every label as a continuation, or generate and match."""
    state_cache: bool = True
    """Keep the frozen layers' states on disk ($EMOREG_STATE_CACHE) for later folds and runs."""
    prefix_dtype: str = "same"
    """The frozen layers below the head: same (the model's dtype) or int8 (dynamic int8, ``prefix``;
    head classify with dtype fp32; its states are cached apart)."""
    prefix_engine: str = "torch"
    """What runs the frozen layers below the head: torch, or openvino (converted from the loaded
    model and compiled for the CPU, ``prefix.OpenVinoPrefix``; the optional extra ``openvino``; head
    classify; its states are cached apart). BENCHMARKS.md has what each engine and dtype costs."""


@dataclass(frozen=True)
class LoraSettings:
    """The LoRA adapter (tune: lora, and head: lm)."""

    lora_r: int = 8
    """The adapter's rank."""
    lora_alpha: float = 16
    """The adapter's scale numerator (scale alpha / r)."""
    lora_dropout: float = 0.05
    """Dropout on the adapter's input."""
    target_modules: Any = "auto"
    """Which linear layers get an adapter (auto: attention and MLP projections)."""
    merge_lora: bool = False
    """Fold the LoRA weights into the base weights while scoring (head lm; the base weights are
    restored exactly afterwards; BENCHMARKS.md has what it saves)."""


@dataclass(frozen=True)
class TrainingSettings:
    """How the tuned weights train (models/training.py)."""

    epochs: int = 3
    """Passes over the training prompts (0: no training)."""
    batch_size: int = 16
    """Prompts per step."""
    lr: float = 1e-3
    """AdamW's peak learning rate."""
    warmup: float = 0.1
    """The share of steps over which the rate rises linearly (then decays linearly to zero)."""
    weight_decay: float = 0.0
    """AdamW's weight decay."""
    max_grad_norm: float = 1.0
    """Gradients are clipped to this norm."""
    class_weight: str | None = "balanced"
    """balanced (each class n / (k * count)), sqrt (its square root) or null."""
    max_train: int | None = None
    """Train on at most this many segments per fold (stratified, seeded; null: all)."""
    checkpoint_minutes: float | None = 10
    """Save what resumes a killed fit this often, and at the end (null: never)."""
    trainer: str = "emoreg"
    """emoreg (the loop of models/training.py) or hf: the plain recipe most users write (Hugging
    Face ``Trainer`` + PEFT, the causal-LM loss over the whole sequence and vocabulary, fp32), for
    comparisons (benchmarks/llm_speed.py); head lm only, no class weights."""
    answer_loss: str = "mean"
    """head lm: a training prompt's loss is the mean or the sum of its answer tokens' losses. With
    mean, a label of more tokens gets a smaller share of the gradient on its deciding first token."""


@dataclass(frozen=True)
class HeadSettings:
    """Where the model is read and what is tuned."""

    head: str = "classify"
    """classify (a label head on the last token's state) or lm (the study's label scoring as text)."""
    tune: str = "full"
    """full (every weight of the tuned layers) or lora."""
    tune_layers: int | None = 1
    """Train only the top K decoder layers (null: all). With head classify the states entering them
    are computed once per prompt and cached (``states``); with head lm LoRA goes on those layers."""
    head_init: str = "labels"
    """The head starts as the model's output rows of each label's first token (labels) or at zeros."""
    layers: Any = "ensemble"
    """head classify: use the first N decoder layers (the head reads the state after layer N through
    the final norm; a pass costs N/L of the whole model's); ensemble: the head at every candidate
    depth, its probabilities averaged; auto: the depth and the epochs (1 to ``epochs``) chosen in
    each fold on an inner split of its training subjects, then refitted on all (``auto_depth``);
    null: the whole model."""
    state_layers: list[int] | None = None
    """head classify: more layers whose entering states the states pass keeps on disk on its way to
    the tuned layer (each below ``layers``): a depth sweep costs one pass, not one per depth."""
    mix_layers: list[int] | None = None
    """head classify: lower layers whose last-token states the head also reads, through a learned
    scalar mix with the tuned layer's output (``mix``); each below the first tuned layer."""
    candidates: list[int] | None = None
    """layers auto or ensemble: the depths (null: four between 40% and 70% of the model)."""
    inner_share: float = 0.2
    """layers auto: the share of the training subjects held out to choose on."""
    min_subjects: int = 8
    """layers auto: below this many training subjects, no inner split: the fallback depth."""
    fallback_layers: int | None = None
    """layers auto: the depth used below min_subjects (null: the candidate nearest 55%)."""


@dataclass(frozen=True)
class LlmSettings:
    """Every setting of ``model: llm``, typed and grouped by concern; ``of(params)`` resolves the
    defaults (those of the chosen head)."""

    model: ModelSettings
    lora: LoraSettings
    training: TrainingSettings
    head: HeadSettings

    @classmethod
    def of(cls, params: dict[str, Any]) -> LlmSettings:
        parts = {}
        for name, kind in CONCERNS.items():
            parts[name] = kind(**{f.name: default_of(params, f.name) for f in fields(kind)})
        return cls(**parts)


CONCERNS = {"model": ModelSettings, "lora": LoraSettings, "training": TrainingSettings, "head": HeadSettings}
# the defaults are the best measured recipe that holds without hand tuning (docs/llm.md, "The
# defaults"): the label head on one fully tuned layer at four depths, averaged; ``head: lm`` (the
# study's formulation: LoRA over the whole model, labels scored as text) takes LM_DEFAULTS where a
# value is not set
DEFAULTS = {f.name: f.default for kind in CONCERNS.values() for f in fields(kind)}
LM_DEFAULTS = {"epochs": 1, "batch_size": 8, "class_weight": None, "score_batch": 8, "tune_layers": None,
               "tune": "lora", "layers": None}
RULES = {
    "model": text(), "epochs": whole(0), "batch_size": whole(1), "lr": positive(), "warmup": share(),
    "weight_decay": at_least(0), "max_grad_norm": positive(), "lora_r": whole(1), "lora_alpha": positive(),
    "lora_dropout": share(), "class_weight": choice("balanced", "sqrt", None), "max_train": or_null(whole(1)),
    "dtype": choice("auto", "bf16", "fp32"), "quantize_4bit": choice(True, False),
    "decode": choice("score", "generate"), "score_batch": whole(1), "trainer": choice("emoreg", "hf"),
    "checkpoint_minutes": or_null(at_least(0)), "answer_loss": choice("mean", "sum"),
    "head": choice("lm", "classify"), "tune_layers": or_null(whole(1)), "tune": choice("lora", "full"),
    "head_init": choice("labels", "zeros"), "state_cache": choice(True, False),
    "layers": ("a whole number of at least 1, auto, ensemble, or null",
               lambda v: v is None or v in ("auto", "ensemble") or whole(1)[1](v)),
    "merge_lora": choice(True, False), "state_layers": or_null(whole_list(0)),
    "candidates": or_null(whole_list(1)), "inner_share": ("a share above 0 and below 1", lambda v: share()[1](v) and v > 0),
    "min_subjects": whole(2), "fallback_layers": or_null(whole(1)),
    "answer_prefix": ("text (e.g. \" \"; empty for none)", lambda v: isinstance(v, str)),
    "prefix_dtype": choice("same", "int8"), "prefix_engine": choice("torch", "openvino"), "mix_layers": or_null(whole_list(0)),
    "system": ("text, or null for the model's own", lambda v: v is None or isinstance(v, str)),
    "target_modules": ("auto, or a list of module names", lambda v: v == "auto" or (
        isinstance(v, list) and bool(v) and all(isinstance(x, str) for x in v))),
}


def default_of(params: dict[str, Any], key: str) -> Any:
    """``key``'s value: as set, else the default of the chosen head."""
    if key in params:
        return params[key]
    if params.get("head", DEFAULTS["head"]) == "lm" and key in LM_DEFAULTS:
        return LM_DEFAULTS[key]
    return DEFAULTS[key]


def conflicts(params: dict[str, Any]) -> list[str]:
    """Settings that are each valid but do not go together."""
    get = lambda key: default_of(params, key)  # noqa: E731
    out = []
    classify = get("head") == "classify"
    if get("tune") == "full" and not classify:
        out.append("tune full (every weight of the tuned layers) needs head: classify")
    if get("layers") is not None and not classify:
        out.append("layers (a truncated decoder) needs head: classify; the language-model head reads the last layer")
    k, n = get("tune_layers"), get("layers")
    if isinstance(k, int) and isinstance(n, int) and k > n:
        out.append(f"tune_layers ({k}) cannot exceed layers ({n})")
    auto = n == "auto"
    depths = n in ("auto", "ensemble")
    if auto and get("epochs") < 1:
        out.append("layers auto chooses the epochs too, from 1 to epochs; set epochs to at least 1")
    if depths and get("state_layers") is not None:
        out.append(f"layers {n} keeps its candidates' states itself; leave state_layers out")
    if depths and k is None:
        out.append(f"layers {n} needs tune_layers (a whole number): the depth is where the tuned layers sit")
    if params.get("candidates") is not None and not depths:
        out.append("candidates is a setting of layers: auto or ensemble; set layers to one of them or leave "
                   "candidates out")
    if params.get("fallback_layers") is not None and not auto:
        out.append("fallback_layers is a setting of layers: auto; set layers to auto or leave fallback_layers out")
    low = k if isinstance(k, int) else 1
    for key, values in (("candidates", get("candidates") or []), ("fallback_layers", [get("fallback_layers")])):
        small = [v for v in values if isinstance(v, int) and v < low]
        if small:
            out.append(f"{key} {small} cannot be below tune_layers ({low})")
    if classify and get("trainer") != "emoreg":
        out.append("head classify has its own training loop; leave trainer at emoreg")
    if classify and get("decode") != "score":
        out.append("head classify predicts from its label head; set decode to score (the default)")
    extra = get("state_layers")
    if extra is not None and not (classify and get("state_cache")):
        out.append("state_layers (more layers' states kept on disk) needs head: classify and state_cache: true")
    if isinstance(extra, list) and isinstance(n, int) and any(isinstance(x, int) and x >= n for x in extra):
        out.append(f"state_layers {extra} must each be below layers ({n}): a truncated model has no deeper layer")
    mix = get("mix_layers")
    if mix is not None and not classify:
        out.append("mix_layers (a scalar mix of lower layers) needs head: classify")
    if isinstance(mix, list) and isinstance(n, int) and isinstance(k, int) and any(
            isinstance(x, int) and x >= n - k for x in mix):
        out.append(f"mix_layers {mix} must each be below the first tuned layer ({n - k})")
    if mix is not None and depths:
        out.append(f"mix_layers reads fixed layers; give layers a number, not {n}")
    if get("prefix_dtype") == "int8" and not (classify and get("dtype") == "fp32"):
        out.append("prefix_dtype int8 (the frozen layers in int8) needs head: classify and dtype: fp32")
    if get("prefix_engine") == "openvino" and not classify:
        out.append("prefix_engine openvino (the frozen layers below the head) needs head: classify")
    out += _against_the_model(get)
    if get("trainer") == "hf" and get("class_weight") is not None:
        out.append("trainer hf (the plain Trainer recipe) takes no class weights; set class_weight to null")
    return out

def _against_the_model(get) -> list[str]:
    """Depths the base model does not have, from its layer count read without its weights."""
    from .loading import known_layers

    model = get("model")
    total = known_layers(model) if isinstance(model, str) else None
    if total is None:
        return []
    out = []
    for key in ("layers", "tune_layers", "fallback_layers"):
        value = get(key)
        if isinstance(value, int) and value > total:
            out.append(f"{key} ({value}) exceeds the {total} layers of {model}")
    for key in ("candidates", "state_layers"):
        deep = [v for v in get(key) or [] if isinstance(v, int) and v >= total + (key == "candidates")]
        if deep:
            limit = f"at most {total}" if key == "candidates" else f"below {total}"
            out.append(f"{key} {deep} must be {limit}, the layers of {model}")
    return out
