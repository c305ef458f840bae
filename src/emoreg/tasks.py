"""Tasks: label schemes, each an ordered set of labels with one-sentence definitions.

The definitions are written into every prompt, so they are part of what the model learns from.
Built-in tasks are listed in ``BUILTIN_TASKS``; users add their own in YAML::

    name: my-task
    question: Which strategy does the speaker use at this moment?   # optional
    labels:
      - name: reappraisal
        definition: The person reinterprets the situation to change its emotional meaning.
      - name: suppression
        definition: The person hides the outward signs of the emotion.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from .errors import EmoregError, Problem, ValidationError


@dataclass(frozen=True)
class Task:
    """A label scheme.

    Attributes:
        name: short identifier, used on the command line and in run directories.
        labels: the labels in a fixed order; classifiers' probability columns follow it.
        definitions: one sentence per label, written into prompts.
        question: what the classifier is asked about each moment.
        notes: provenance of the definitions, shown in docs and reports, never in prompts.
    """

    name: str
    labels: tuple[str, ...]
    definitions: Mapping[str, str]
    question: str = "Which of these labels describes the person's behaviour at this moment?"
    notes: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "definitions", MappingProxyType(dict(self.definitions)))
        if len(set(self.labels)) != len(self.labels):
            raise EmoregError(f"task {self.name!r}: labels repeat: {list(self.labels)}")
        missing = [label for label in self.labels if label not in self.definitions]
        if missing:
            raise EmoregError(f"task {self.name!r}: no definition for label(s) {missing}")

    def index(self, label: str) -> int:
        """Column of ``label`` in probability arrays."""
        try:
            return self.labels.index(label)
        except ValueError:
            raise EmoregError(
                f"label {label!r} is not part of task {self.name!r} "
                f"(labels: {', '.join(self.labels)})"
            ) from None


DEEP_SHAME = Task(
    name="deep-shame",
    labels=(
        "Withdrawal",
        "Attack Self",
        "Attack Other",
        "Avoidance",
        "Depreciation",
        "Stabilize Self",
        "Rest",
    ),
    definitions={
        "Withdrawal": "The person hides or pulls back from the interaction, for example by "
        "falling silent, averting the gaze or shrinking away.",
        "Attack Self": "The person turns the shame against themselves, criticising, blaming or "
        "putting themselves down.",
        "Attack Other": "The person turns the shame outward, blaming, criticising or becoming "
        "hostile towards the interviewer or others.",
        "Avoidance": "The person denies or distracts from the shame, for example by joking, "
        "boasting or acting as if nothing had happened.",
        "Depreciation": "The person devalues the situation or its evaluation, for example by "
        "saying that the interview or the feedback does not matter.",
        "Stabilize Self": "The person actively composes themselves and regains a steady, "
        "self-assured stance, for example by calming down or reframing what happened.",
        "Rest": "No emotion-regulation strategy is visible at this moment.",
    },
    question="Which emotion-regulation strategy does the interviewee use at this moment?",
    notes=(
        "Seven classes of the DEEP study (ACII 2024). Withdrawal, Attack Self, Attack Other and "
        "Avoidance follow Nathanson's Compass of Shame; the definitions of Depreciation, "
        "Stabilize Self and Rest are emoreg's reading of the study, not quotations from it."
    ),
)

ANNOMI_CLIENT_TALK = Task(
    name="annomi-client-talk",
    labels=("change", "neutral", "sustain"),
    definitions={
        "change": "The client speaks in favour of changing the target behaviour (desire, "
        "ability, reasons, need, commitment or steps towards change).",
        "neutral": "The client's talk leans neither towards nor away from changing the target "
        "behaviour.",
        "sustain": "The client speaks in favour of keeping the target behaviour as it is "
        "(the status quo).",
    },
    question="What kind of talk does the client produce in their latest utterance?",
    notes="Client talk types of motivational interviewing as annotated in AnnoMI (Wu et al. 2022).",
)

ANNOMI_THERAPIST = Task(
    name="annomi-therapist",
    labels=("reflection", "question", "therapist_input", "other"),
    definitions={
        "reflection": "The therapist reflects back what the client said or meant, simply or "
        "with added meaning.",
        "question": "The therapist asks the client a question, open or closed.",
        "therapist_input": "The therapist gives information, advice, options or a negotiated "
        "plan.",
        "other": "Any other therapist utterance, such as greetings, acknowledgements or "
        "small talk.",
    },
    question="What is the main behaviour of the therapist in their latest utterance?",
    notes="Main therapist behaviour as annotated in AnnoMI (Wu et al. 2022).",
)

ANNOMI_THERAPIST_FINE = Task(
    name="annomi-therapist-fine",
    labels=("simple_reflection", "complex_reflection", "open_question", "closed_question", "information",
            "advice", "options", "negotiation", "other"),
    definitions={
        "simple_reflection": "The therapist repeats or rephrases what the client said, adding little or "
        "no meaning.",
        "complex_reflection": "The therapist reflects what the client said with added meaning or emphasis: "
        "a guess at what the client means, feels or has left unsaid.",
        "open_question": "The therapist asks a question that invites the client to answer in their own "
        "words, at length.",
        "closed_question": "The therapist asks a question that can be answered with yes, no or a short "
        "fact.",
        "information": "The therapist gives the client information.",
        "advice": "The therapist advises the client what to do.",
        "options": "The therapist lays out options for the client to choose from.",
        "negotiation": "The therapist negotiates a goal or a plan with the client.",
        "other": "Any other therapist utterance, such as greetings, acknowledgements or small talk.",
    },
    question="What does the therapist do in their latest utterance?",
    notes="AnnoMI's main therapist behaviour split by the subtype its annotators gave (Wu et al. 2023; "
          "AnnoMI-full.csv): nine classes, label names of one to two words.",
)

BUILTIN_TASKS: dict[str, Task] = {
    t.name: t for t in (DEEP_SHAME, ANNOMI_CLIENT_TALK, ANNOMI_THERAPIST, ANNOMI_THERAPIST_FINE)
}


def load_task(name_or_path: str | Path) -> Task:
    """A built-in task by name, or a user task from a YAML file."""
    if isinstance(name_or_path, str) and name_or_path in BUILTIN_TASKS:
        return BUILTIN_TASKS[name_or_path]
    path = Path(name_or_path)
    if path.suffix.lower() not in {".yaml", ".yml"}:
        raise EmoregError(
            f"unknown task {str(name_or_path)!r}: use a built-in task "
            f"({', '.join(BUILTIN_TASKS)}) or the path of a task YAML file"
        )
    if not path.is_file():
        raise EmoregError(f"task file {path} does not exist")
    from .yamlio import read_yaml

    data = read_yaml(path, "task")
    return task_from_dict(data, where=str(path))


def task_from_dict(data: object, where: str) -> Task:
    """Build a task from parsed YAML, reporting every problem at once."""
    problems: list[Problem] = []

    def bad(field: str | None, message: str) -> None:
        problems.append(Problem(where, field, message))

    if not isinstance(data, dict):
        raise ValidationError(where, [Problem(where, None, "expected a mapping with 'name' and 'labels'")])
    unknown = set(data) - {"name", "labels", "question", "notes"}
    for key in sorted(unknown):
        bad(key, "unknown key (allowed: name, labels, question, notes)")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        bad("name", "expected a non-empty string")
    for key in ("question", "notes"):
        if key in data and not isinstance(data[key], str):
            bad(key, "expected a string")
    labels: list[str] = []
    definitions: dict[str, str] = {}
    raw = data.get("labels")
    if not isinstance(raw, list) or len(raw) < 2:
        bad("labels", "expected a list of at least two {name, definition} entries")
        raw = []
    for i, entry in enumerate(raw):
        field = f"labels[{i}]"
        if not isinstance(entry, dict):
            bad(field, "expected a mapping with 'name' and 'definition'")
            continue
        label, definition = entry.get("name"), entry.get("definition")
        if not isinstance(label, str) or not label.strip():
            bad(f"{field}.name", "expected a non-empty string")
            continue
        if not isinstance(definition, str) or not definition.strip():
            bad(f"{field}.definition", f"label {label!r} needs a one-sentence definition")
        if label in definitions:
            bad(f"{field}.name", f"label {label!r} appears twice")
        for key in sorted(set(entry) - {"name", "definition"}):
            bad(f"{field}.{key}", "unknown key (allowed: name, definition)")
        labels.append(label)
        definitions[label] = definition if isinstance(definition, str) else ""
    if problems:
        raise ValidationError(where, problems)
    kwargs = {k: data[k] for k in ("question", "notes") if k in data}
    return Task(name=name, labels=tuple(labels), definitions=definitions, **kwargs)
