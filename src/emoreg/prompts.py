"""Prompts: each information source verbalised into plain sentences, under a named template.

Sources, in the fixed order a prompt presents them:

* ``context``        the situation (AnnoMI: the session's topic)
* ``person``         subject-level factors
* ``history``        the transcript before the current turn
* ``utterance``      the current turn (the last turn of the transcript)
* ``nonverbal``      behaviour events and numeric features of the segment's window
* ``introspection``  what the person said afterwards about this moment

``transcript`` is shorthand for ``history,utterance``. A source that a segment lacks is left
out, never invented. The model's chat template is applied later, by the model code.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from .errors import EmoregError
from .segments import Nonverbal, Segment, Turn
from .tasks import Task

PROMPT_SOURCES = ("context", "person", "history", "utterance", "nonverbal", "introspection")
SOURCE_ALIASES = {"transcript": ("history", "utterance")}
# emoreg-v1: question, label definitions, sources, answer line.
# emoreg-v1-compact: the same without the label definitions (for fine-tuned models, which learn
# the labels from examples; it saves about 80 tokens per prompt on AnnoMI).
TEMPLATES = ("emoreg-v1", "emoreg-v1-compact")

# How common behaviour codes read in prose; PromptConfig.behaviour_phrases adds or overrides.
DEFAULT_BEHAVIOUR_PHRASES = {
    "gaze_away": "looks away",
    "head_down": "lowers the head",
    "smile": "smiles",
    "smirk": "smirks",
    "laugh": "laughs",
    "frown": "frowns",
    "nod": "nods",
    "head_shake": "shakes the head",
    "shrug": "shrugs",
    "lean_forward": "leans forward",
    "lean_back": "leans back",
    "deep_breath": "takes a deep breath",
    "lip_press": "presses the lips together",
    "self_touch": "touches their own face or body",
}

_TOKEN = re.compile(r"\w+|[^\w\s]")


def approx_token_count(text: str) -> int:
    """Words and punctuation marks: a tokenizer-free estimate of the token count.

    Sub-word tokenizers usually give somewhat more tokens than this (about 1.2-1.4 per English
    word); pass a real tokenizer's counter to ``render_prompt`` for an exact budget.
    """
    return len(_TOKEN.findall(text))


def parse_sources(spec: str | Iterable[str]) -> tuple[str, ...]:
    """``"transcript,context"`` -> ``("context", "history", "utterance")`` in the fixed order."""
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    chosen: set[str] = set()
    for name in names:
        if name in SOURCE_ALIASES:
            chosen.update(SOURCE_ALIASES[name])
        elif name in PROMPT_SOURCES:
            chosen.add(name)
        elif name == "all":
            chosen.update(PROMPT_SOURCES)
        else:
            valid = ", ".join((*PROMPT_SOURCES, *SOURCE_ALIASES, "all"))
            raise EmoregError(f"unknown source {name!r} in --sources; choose from: {valid}")
    if not chosen:
        raise EmoregError("--sources names no source; choose at least one, e.g. --sources transcript")
    return tuple(s for s in PROMPT_SOURCES if s in chosen)


@dataclass(frozen=True)
class PromptConfig:
    """How segments become prompts; a hyper-parameter of every text-based classifier.

    Attributes:
        template: name and version of the layout (``TEMPLATES``); a change of wording is a new
            version, so results stay comparable.
        sources: which sources to include (see ``parse_sources``).
        max_tokens: budget for the whole prompt; the oldest transcript turns go first, the
            current utterance always stays. None: no budget.
        count: what ``max_tokens`` counts. ``model`` (the default): each model its own tokens
            (an LLM its tokenizer's, counted on the prompt before its chat template; a model
            without a tokenizer, such as TF-IDF on the prompt, words and punctuation marks), so
            two models may keep different history under one budget; ``words``: words and
            punctuation marks for every model; or a tokenizer (a short model name such as
            ``smollm2-135m``, or a model folder): its tokens for every model. Set ``words`` or a
            tokenizer where models are compared on what they read (ablations, ensembles).
        feature_thresholds: numeric nonverbal features with a threshold are mentioned only when
            at or above it ("au12_mean is high (0.83)"); features without one are stated with
            their value.
        behaviour_phrases: how behaviour codes read in prose, e.g. ``{"gaze_away": "looks away"}``,
            on top of ``DEFAULT_BEHAVIOUR_PHRASES``; other codes read with underscores as spaces.
    """

    template: str = "emoreg-v1"
    sources: tuple[str, ...] = PROMPT_SOURCES
    max_tokens: int | None = 512
    count: str = "model"
    feature_thresholds: Mapping[str, float] = field(default_factory=dict)
    behaviour_phrases: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.template not in TEMPLATES:
            raise EmoregError(f"unknown prompt template {self.template!r}; known: {', '.join(TEMPLATES)}")
        object.__setattr__(self, "sources", parse_sources(self.sources))
        if self.max_tokens is not None and (isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int)):
            raise EmoregError(f"max_tokens must be a whole number of tokens (at least 16) or null, got {self.max_tokens!r}")
        if self.max_tokens is not None and self.max_tokens < 16:
            raise EmoregError(f"max_tokens must be at least 16, got {self.max_tokens}")
        if not isinstance(self.count, str) or not self.count.strip():
            raise EmoregError(f"count (what max_tokens counts) must be model, words, or a tokenizer's model name or "
                              f"folder, got {self.count!r}")
        for name, value in dict(self.feature_thresholds).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value in (
                    float("inf"), float("-inf")):
                raise EmoregError(f"feature_thresholds.{name} must be a finite number, got {value!r} (a threshold "
                                  "that is not a number would drop the feature from every prompt)")
        for code, phrase in dict(self.behaviour_phrases).items():
            if not isinstance(phrase, str) or not phrase.strip():
                raise EmoregError(f"behaviour_phrases.{code} must be the words that describe it (a non-empty "
                                  f"string), got {phrase!r}")
        object.__setattr__(self, "feature_thresholds", MappingProxyType(dict(self.feature_thresholds)))
        object.__setattr__(self, "behaviour_phrases",
                           MappingProxyType({**DEFAULT_BEHAVIOUR_PHRASES, **self.behaviour_phrases}))


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt and what the budget did to it."""

    text: str
    n_tokens: int
    sources: tuple[str, ...]  # the sources that made it into the text
    dropped_turns: int = 0  # oldest history turns left out to fit the budget
    over_budget: bool = False  # still longer than max_tokens with all history dropped


# --------------------------------------------------------------------------- verbalisers


def _number(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def _humanise(name: str) -> str:
    return name.replace("_", " ").strip()


def verbalise_context(context: str) -> str:
    return f"Situation: {context.strip()}"


def verbalise_person(person: Mapping[str, object]) -> str:
    def show(value: object) -> str:
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, float):
            return _number(value)
        return str(value)

    facts = "; ".join(f"{_humanise(k)}: {show(v)}" for k, v in person.items())
    return f"About the person: {facts}."


def verbalise_turn(turn: Turn) -> str:
    return f"{turn.speaker}: {turn.text.strip()}"


def verbalise_history(turns: tuple[Turn, ...], dropped: int) -> str:
    lines = ["Conversation so far:"]
    if dropped:
        lines.append(f"({dropped} earlier turn{'s' if dropped != 1 else ''} left out)")
    lines += [verbalise_turn(t) for t in turns]
    return "\n".join(lines)


def verbalise_utterance(turn: Turn) -> str:
    return f"Latest utterance ({turn.speaker}): {turn.text.strip()}"


def verbalise_nonverbal(
    nonverbal: Nonverbal, thresholds: Mapping[str, float], phrases: Mapping[str, str]
) -> str | None:
    parts = []
    for ev in sorted(nonverbal.events, key=lambda e: (e.start_s, e.behaviour)):
        text = phrases.get(ev.behaviour, _humanise(ev.behaviour))
        if ev.duration_s > 0:
            text += f" for {ev.duration_s:.1f} s"
        if ev.intensity is not None:
            text += f" (intensity {_number(ev.intensity)})"
        parts.append(text)
    for name, value in nonverbal.features.items():
        if name in thresholds:
            if value >= thresholds[name]:
                parts.append(f"{_humanise(name)} is high ({_number(value)})")
        else:
            parts.append(f"{_humanise(name)}: {_number(value)}")
    if not parts:
        return None
    return "Nonverbal behaviour: " + "; ".join(parts) + "."


def verbalise_introspection(text: str) -> str:
    return f"What the person said afterwards about this moment: {text.strip()}"


# --------------------------------------------------------------------------- template


def _render(segment: Segment, task: Task, config: PromptConfig, dropped: int) -> tuple[str, tuple[str, ...]]:
    blocks = [task.question]
    if config.template == "emoreg-v1":
        blocks.append("Labels:\n" + "\n".join(f"- {label}: {task.definitions[label]}" for label in task.labels))
    used = []
    turns = segment.transcript or ()
    for source in config.sources:
        block = None
        if source == "context" and segment.has("context"):
            block = verbalise_context(segment.context)
        elif source == "person" and segment.has("person"):
            block = verbalise_person(segment.person)
        elif source == "history" and len(turns) > 1:
            block = verbalise_history(turns[dropped:-1], dropped)
        elif source == "utterance" and turns:
            block = verbalise_utterance(turns[-1])
        elif source == "nonverbal" and segment.nonverbal is not None:
            block = verbalise_nonverbal(segment.nonverbal, config.feature_thresholds, config.behaviour_phrases)
        elif source == "introspection" and segment.has("introspection"):
            block = verbalise_introspection(segment.introspection)
        if block is not None:
            blocks.append(block)
            used.append(source)
    blocks.append(f"Answer with exactly one label: {', '.join(task.labels)}.")
    return "\n\n".join(blocks), tuple(used)


def render_prompt(
    segment: Segment,
    task: Task,
    config: PromptConfig = PromptConfig(),
    count_tokens: Callable[[str], int] = approx_token_count,
) -> Prompt:
    """Verbalise ``segment`` for ``task`` within the token budget of ``config``.

    When the prompt is too long the oldest history turns are dropped (the fewest that make it
    fit, found with ``count_tokens`` by a doubling search from the newest turn, then bisection, so
    the cost follows the budget, not the history's length); the current utterance always stays. If even
    that is too long, the prompt is returned with ``over_budget=True`` rather than cut mid-text.
    """
    history = max(len(segment.transcript or ()) - 1, 0) if "history" in config.sources else 0
    if config.max_tokens is None or history == 0:
        text, used = _render(segment, task, config, 0)
        n = count_tokens(text)
        return Prompt(text, n, used, over_budget=config.max_tokens is not None and n > config.max_tokens)

    def attempt(dropped: int):
        text, used = _render(segment, task, config, dropped)
        n = count_tokens(text)
        return n <= config.max_tokens, Prompt(text, n, used, dropped_turns=dropped)

    # Keep the most recent turns that fit. Search from the newest turn backwards, doubling the
    # number kept until the prompt no longer fits, then bisect: the work grows with what fits in
    # the budget, not with the length of the history (a live session's grows without end).
    best, failed, kept = None, None, 1
    while failed is None:
        kept = min(kept, history)
        ok, prompt = attempt(history - kept)
        if not ok:
            failed = kept
        elif kept == history:
            return prompt  # the whole history fits
        else:
            best, kept = (kept, prompt), kept * 2
    if best is None:  # not even the latest turn fits beside the rest: drop the whole history
        ok, prompt = attempt(history)
        return prompt if ok else replace(prompt, over_budget=True)
    lo, hi = best[0] + 1, failed - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        ok, prompt = attempt(history - mid)
        if ok:
            best, lo = (mid, prompt), mid + 1
        else:
            hi = mid - 1
    return best[1]
