"""The LLM classifier's settings: their defaults (one set per head), what each may be, and which
combinations cannot work, checked when a config is read (before anything is written), including
against the base model's layer count read without its weights. ``LlmClassifier`` documents each
setting; this module holds the rules so a reader finds them in one place."""

from __future__ import annotations

from typing import Any

from ..rules import at_least, choice, or_null, positive, share, text, whole, whole_list
from .tokens import DEFAULT_SYSTEM

# the defaults are the best measured recipe that holds without hand tuning (docs/llm.md, "The
# defaults"): the label head on one fully tuned layer at four depths, averaged; ``head: lm`` (the
# study's formulation: LoRA over the whole model, labels scored as text) takes LM_DEFAULTS where a
# value is not set
DEFAULTS = {
    "model": "smollm2-135m", "epochs": 3, "batch_size": 16, "lr": 1e-3, "warmup": 0.1,
    "weight_decay": 0.0, "max_grad_norm": 1.0, "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.05,
    "target_modules": "auto", "class_weight": "balanced", "max_train": None, "dtype": "auto",
    "quantize_4bit": False, "decode": "score", "score_batch": 16, "system": DEFAULT_SYSTEM,
    "trainer": "emoreg", "checkpoint_minutes": 10, "answer_loss": "mean", "answer_prefix": "",
    "head": "classify", "tune_layers": 1, "tune": "full", "head_init": "labels", "state_cache": True,
    "layers": "ensemble", "merge_lora": False, "state_layers": None, "mix_layers": None,
    "prefix_dtype": "same",
    "candidates": None, "inner_share": 0.2, "min_subjects": 8, "fallback_layers": None,
}
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
