"""MODEL_CARD.md beside a saved model: what it predicts, from what data, how well across subjects,
on what base model under which licence, and what it must not be used for.

``emoreg train CONFIG --out MODEL [--evaluated RUN]`` writes it; with ``--evaluated`` (a finished
run of the same config) the card carries that run's cross-subject metrics per class with CIs and
its calibration. ``emoreg serve`` shows it at ``/model``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .atomic import atomic_write_text
from .errors import EmoregError

CARD = "MODEL_CARD.md"

# The licence of each base model a config can name (short names of models.llm.loading.SHIPPED,
# and the families of hub ids people use); anything else: "see the model's own card".
LICENCES = {
    "smollm2": "Apache-2.0 (SmolLM2, Hugging Face TB)",
    "gemma": "the Gemma Terms of Use (Google): use restrictions apply; read them before deploying",
    "llama-2": "the Llama 2 Community License (Meta): use restrictions and an acceptable-use policy apply",
    "llama2": "the Llama 2 Community License (Meta): use restrictions and an acceptable-use policy apply",
    "qwen": "Apache-2.0 upstream (Qwen); check the licence of the file you use",
    "minilm": "Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2)",
}
NO_BASE = {"tfidf", "majority", "stratified", "bayesnet"}


def _base_models(config: dict[str, Any]) -> list[str]:
    """The pretrained models a config's model builds on (members and wrapped models too)."""
    model, params = config.get("model"), config.get("params") or {}
    if model == "ensemble":
        return [b for m in params.get("members") or [] for b in _base_models(m)]
    if model == "calibrated":
        return _base_models({"model": params.get("model"), "params": params.get("params")})
    if model in ("llm", "llm-features"):
        return [str(params.get("model", "smollm2-135m"))]
    if model in ("embedding", "encoder-ft"):
        return [str(params.get("encoder", "minilm"))]
    return []


def licence_of(base: str) -> str:
    low = base.lower()
    for key, licence in LICENCES.items():
        if key in low:
            return licence
    return "not known to emoreg: see the base model's own card and licence before you use this model"


def check_same_config(train_config: dict[str, Any], run_config: dict[str, Any], run: Path) -> None:
    keys = ("corpus", "task", "model", "params", "prompt", "calibrate")
    differ = [k for k in keys if (train_config.get(k) or None) != (run_config.get(k) or None)]
    if differ:
        raise EmoregError(f"--evaluated {run} is a run of another configuration (differs in: {', '.join(differ)}); "
                          "name the run of this config, or leave --evaluated out")


def write_card(folder: Path, config: dict[str, Any], corpus, evaluated: Path | None = None) -> Path:
    """Write ``folder/MODEL_CARD.md`` for a model trained from ``config`` on ``corpus``."""
    task = corpus.task
    lines = [f"# Model card: {config.get('name') or Path(folder).name}", "",
             f"A `{config['model']}` model of emoreg that labels behaviour segments with the task "
             f"`{task.name}`: {task.question}", "", "## Labels", ""]
    lines += [f"- **{label}**: {task.definitions[label]}" for label in task.labels]
    lines += ["", "## Training data", "",
              f"Corpus `{corpus.name}`: {len(corpus.segments):,} segments of "
              f"{len({s.subject_id for s in corpus.segments})} subjects, every one used for training. Files read "
              "(sha256):", ""]
    lines += [f"- `{path}`: `{digest}`" for path, digest in sorted(corpus.files.items())] or ["- (built in)"]
    from .models import MODELS

    prompt = config.get("prompt", {})
    reads = MODELS[config["model"]].inputs(config.get("params") or {}, prompt.get("sources", []))
    lines += ["", f"What it reads of each segment: {reads} (prompt template `{prompt.get('template', 'emoreg-v1')}`, "
                  f"budget {prompt.get('max_tokens')} tokens counted as `{prompt.get('count', 'model')}`, where the "
                  "model reads a prompt).", "",
              "## How well it works across subjects", ""]
    if evaluated is None:
        lines += ["Not stated: this model was trained without naming an evaluation of its config "
                  "(`emoreg train CONFIG --out MODEL --evaluated RUN`). Evaluate the config across subjects "
                  "with `emoreg evaluate` before relying on it.", ""]
    else:
        lines += _evaluation(config, Path(evaluated))
    bases = _base_models(config)
    lines += ["## Base model and licence", ""]
    if not bases:
        lines += [f"None: `{config['model']}` is trained from the corpus alone (emoreg itself is Apache-2.0)."]
    lines += [f"- `{b}`: {licence_of(b)}" for b in bases]
    lines += ["", "## Intended use and limits", "",
              "- Research on emotion regulation and feedback in training tools (job-interview practice, "
              "counselling practice), with people who agreed to be recorded and analysed.",
              "- **Not a diagnosis.** Affect recognition from behaviour is uncertain; a label is a guess about "
              "a moment, not a judgement of a person. Do not use it to make decisions about people (hiring, "
              "grading, clinical care, surveillance).",
              "- Consent: record and analyse people only with their informed consent, and tell them what is "
              "inferred.",
              f"- Groups the corpus does not cover: it was trained on `{corpus.name}` only; other languages, "
              "cultures, ages, settings and recording set-ups may behave differently; measure before use.",
              "- Probabilities: see the calibration above; without `calibrate` they are the model's own.", ""]
    return atomic_write_text(Path(folder) / CARD, "\n".join(lines))


def _evaluation(config: dict[str, Any], run: Path) -> list[str]:
    from .reporting import calibration_of
    from .runs import load_run

    found = load_run(run)
    check_same_config(config, found.config, run)
    m = found.metrics
    pooled = m["pooled"]
    split = found.config.get("split", {})
    lines = [f"From the evaluation run `{run}`: {m['n_segments']:,} test segments of {m['n_subjects']} subjects, "
             f"split `{split.get('kind')}` ({split.get('folds', 'one per subject')} folds, grouped by subject: no "
             "subject in training and test of a fold); 95% CIs by bootstrap over subjects.", "",
             "| metric | value [95% CI] |", "|---|---|"]
    for key, name in (("macro_f1", "macro-F1"), ("accuracy", "accuracy"), ("uar", "UAR")):
        lines.append(f"| {name} | {pooled[key]['value']:.3f} [{pooled[key]['ci95'][0]:.3f}, {pooled[key]['ci95'][1]:.3f}] |")
    cal = calibration_of(found)
    for key, name in (("ece", "ECE (15 equal-mass bins)"), ("brier", "Brier"), ("log_loss", "log-loss")):
        lines.append(f"| {name} | {cal[key]['value']:.3f} [{cal[key]['ci95'][0]:.3f}, {cal[key]['ci95'][1]:.3f}] |")
    lines += ["", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for label, v in m["per_class"].items():
        lines.append(f"| {label} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {int(v['support'])} |")
    return lines + [""]
