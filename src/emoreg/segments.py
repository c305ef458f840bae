"""Segments: the one data format of emoreg, and the validation of one record.

A segment is one labelled time point of one subject. Every information source is optional.
``segment_from_dict`` checks one parsed record and reports every problem at once (field by
field); it never coerces a value to another type. The JSON Lines file of segments is read and
written by ``emoreg.segment_files``.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .errors import Problem
from .tasks import Task

SOURCES = ("context", "transcript", "nonverbal", "person", "introspection")

Scalar = str | int | float | bool


@dataclass(frozen=True)
class Turn:
    """One speaker turn of the transcript."""

    speaker: str
    text: str
    start_s: float | None = None


@dataclass(frozen=True)
class Event:
    """One behaviour event, e.g. ``Event("looks away", 3.0, 5.1)``; times in session seconds."""

    behaviour: str
    start_s: float
    end_s: float
    intensity: float | None = None

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class Nonverbal:
    """Behaviour in the segment's time window: events and/or named numeric features."""

    events: tuple[Event, ...] = ()
    features: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", MappingProxyType(dict(self.features)))


@dataclass(frozen=True)
class Segment:
    """One labelled time point of one subject.

    ``label`` is None at prediction time. ``transcript`` holds the turns up to and including
    this moment (the last turn is the current one). ``meta`` carries corpus-specific facts
    (e.g. AnnoMI's transcript id) for analyses; it is never written into prompts.
    """

    segment_id: str
    subject_id: str
    session_id: str
    start_s: float | None = None
    end_s: float | None = None
    label: str | None = None
    context: str | None = None
    transcript: tuple[Turn, ...] | None = None
    nonverbal: Nonverbal | None = None
    person: Mapping[str, Scalar] | None = None
    introspection: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.person is not None:
            object.__setattr__(self, "person", MappingProxyType(dict(self.person)))
        object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))

    def has(self, source: str) -> bool:
        """Whether this segment carries the information source ``source`` (non-empty)."""
        value = getattr(self, source)
        if value is None:
            return False
        if isinstance(value, Nonverbal):
            return bool(value.events or value.features)
        if isinstance(value, str):
            return bool(value.strip())
        return bool(value)

    def to_dict(self) -> dict[str, Any]:
        """The segment as one JSONL record (absent fields are left out)."""
        out: dict[str, Any] = {
            "segment_id": self.segment_id,
            "subject_id": self.subject_id,
            "session_id": self.session_id,
        }
        for key in ("start_s", "end_s", "label", "context"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.transcript is not None:
            out["transcript"] = [
                {"speaker": t.speaker, "text": t.text}
                | ({"start_s": t.start_s} if t.start_s is not None else {})
                for t in self.transcript
            ]
        if self.nonverbal is not None:
            nv: dict[str, Any] = {}
            if self.nonverbal.events:
                nv["events"] = [
                    {"behaviour": e.behaviour, "start_s": e.start_s, "end_s": e.end_s}
                    | ({"intensity": e.intensity} if e.intensity is not None else {})
                    for e in self.nonverbal.events
                ]
            if self.nonverbal.features:
                nv["features"] = dict(self.nonverbal.features)
            out["nonverbal"] = nv
        if self.person is not None:
            out["person"] = dict(self.person)
        if self.introspection is not None:
            out["introspection"] = self.introspection
        if self.meta:
            out["meta"] = dict(self.meta)
        return out


def source_counts(segments: Iterable[Segment]) -> dict[str, int]:
    """How many segments carry each information source."""
    segments = list(segments)
    return {src: sum(1 for s in segments if s.has(src)) for src in SOURCES}


# --------------------------------------------------------------------------- validation

_TOP_FIELDS = (
    "segment_id", "subject_id", "session_id", "start_s", "end_s", "label", *SOURCES, "meta",
)


class _Checker:
    """Collects problems of one record; each check returns the value or None when bad."""

    def __init__(self, where: str, problems: list[Problem]):
        self.where = where
        self.problems = problems

    def bad(self, field: str | None, message: str) -> None:
        self.problems.append(Problem(self.where, field, message))

    def unknown_keys(self, obj: Mapping[str, Any], allowed: Iterable[str], prefix: str) -> None:
        allowed = tuple(allowed)
        for key in obj:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(allowed)})"
                self.bad(f"{prefix}{key}", f"unknown field{hint}")

    def objects(self, items: list, field: str, keys: tuple[str, ...], shape: str):
        """Yield ``(field[i], item)`` for every object of a list; report the rest and unknown keys."""
        for i, item in enumerate(items):
            where = f"{field}[{i}]"
            if not isinstance(item, dict):
                self.bad(where, f"expected an object {shape}, found {_describe(item)}")
                continue
            self.unknown_keys(item, keys, f"{where}.")
            yield where, item

    def string(self, value: Any, field: str, required: bool = False, nonempty: bool = False):
        if value is None:
            if required:
                self.bad(field, "missing; expected a non-empty string")
            return None
        if not isinstance(value, str):
            self.bad(field, f"expected a string, found {_describe(value)}")
            return None
        if (required or nonempty) and not value.strip():
            self.bad(field, "is empty; expected a non-empty string")
            return None
        if "\x00" in value:
            self.bad(field, f"holds a NUL character (at character {value.index(chr(0))}), which no text field takes "
                            "and many tools cut the text at; remove it at its source")
            return None
        bad_char = lone_surrogate(value)
        if bad_char is not None:
            self.bad(field, f"holds a lone UTF-16 surrogate ({value[bad_char]!r} at character {bad_char}), which is "
                            "not a character and cannot be written; fix the text at its source")
            return None
        return value

    def number(self, value: Any, field: str, required: bool = False):
        if value is None:
            if required:
                self.bad(field, "missing; expected a number")
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.bad(field, f"expected a number, found {_describe(value)}")
            return None
        if not finite(value):
            found = (f"an integer of {len(str(abs(value)))} digits, too large for a number" if isinstance(value, int)
                     else _describe(value))
            self.bad(field, f"expected a finite number, found {found}")
            return None
        return float(value)


def finite(value: int | float) -> bool:
    """A number that is a finite float: an integer too large for one (10**400) is not."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _unwritable(value: Any, place: str):
    """(place, problem) for every value under ``value`` that no JSON file can hold: NaN,
    infinities, integers too large for a float, lone surrogates (in keys too)."""
    if isinstance(value, float) and not math.isfinite(value):
        yield place, f"expected a finite number, found {value}"
    elif isinstance(value, int) and not isinstance(value, bool) and not finite(value):
        yield place, "an integer too large for a number"
    elif isinstance(value, str) and lone_surrogate(value) is not None:
        yield place, "holds a lone UTF-16 surrogate, which is not a character"
    elif isinstance(value, dict):
        for key, item in value.items():
            if lone_surrogate(str(key)) is not None:
                yield place, "a key holds a lone UTF-16 surrogate, which is not a character"
            yield from _unwritable(item, f"{place}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _unwritable(item, f"{place}[{i}]")


def lone_surrogate(text: str) -> int | None:
    """Where ``text`` holds a lone UTF-16 surrogate (JSON's "\\ud800"), which no UTF-8 file can hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def _describe(value: Any) -> str:
    kinds = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "an object", type(None): "null"}
    kind = kinds.get(type(value), type(value).__name__)
    text = json.dumps(value) if isinstance(value, (str, int, float, bool)) else ""
    return f"{kind} {text}".strip() if len(text) <= 40 else kind


def segment_from_dict(
    record: Any, where: str, problems: list[Problem], task: Task | None = None
) -> Segment | None:
    """Validate one parsed JSON record; append every problem found; None if any."""
    before = len(problems)
    c = _Checker(where, problems)
    if not isinstance(record, dict):
        c.bad(None, f"expected a JSON object, found {_describe(record)}")
        return None
    c.unknown_keys(record, _TOP_FIELDS, "")
    ids = {k: c.string(record.get(k), k, required=True) for k in ("segment_id", "subject_id", "session_id")}
    start = c.number(record.get("start_s"), "start_s")
    end = c.number(record.get("end_s"), "end_s")
    if start is not None and end is not None and end < start:
        c.bad("end_s", f"ends before it starts (start_s={start:g}, end_s={end:g})")
    label = c.string(record.get("label"), "label", nonempty=True)
    if label is not None and task is not None and label not in task.labels:
        close = difflib.get_close_matches(label, task.labels, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        c.bad("label", f"{label!r} is not a label of task {task.name!r} "
                       f"({', '.join(task.labels)}){hint}")
    context = c.string(record.get("context"), "context")
    introspection = c.string(record.get("introspection"), "introspection")
    transcript = _transcript(record.get("transcript"), c)
    nonverbal = _nonverbal(record.get("nonverbal"), c)
    person = _person(record.get("person"), c)
    meta = record.get("meta", {})
    if not isinstance(meta, dict):
        c.bad("meta", f"expected an object, found {_describe(meta)}")
    else:
        for place, problem in _unwritable(meta, "meta"):
            c.bad(place, problem)
    if len(problems) > before:
        return None
    return Segment(
        segment_id=ids["segment_id"], subject_id=ids["subject_id"], session_id=ids["session_id"],
        start_s=start, end_s=end, label=label, context=context, transcript=transcript,
        nonverbal=nonverbal, person=person, introspection=introspection, meta=meta,
    )


def _transcript(value: Any, c: _Checker) -> tuple[Turn, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        c.bad("transcript", f"expected a list of turns {{speaker, text, start_s}}, found {_describe(value)}")
        return None
    turns = []
    for f, turn in c.objects(value, "transcript", ("speaker", "text", "start_s"), "{speaker, text, start_s}"):
        speaker = c.string(turn.get("speaker"), f"{f}.speaker", required=True)
        text = c.string(turn.get("text"), f"{f}.text", required=True)
        start = c.number(turn.get("start_s"), f"{f}.start_s")
        if speaker is not None and text is not None:
            turns.append(Turn(speaker, text, start))
    return tuple(turns)


def _nonverbal(value: Any, c: _Checker) -> Nonverbal | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        c.bad("nonverbal", "expected an object with 'events' (a list) and/or 'features' "
                           f"(an object of numbers), found {_describe(value)}")
        return None
    c.unknown_keys(value, ("events", "features"), "nonverbal.")
    events = []
    raw_events = value.get("events", [])
    if not isinstance(raw_events, list):
        c.bad("nonverbal.events", f"expected a list, found {_describe(raw_events)}")
        raw_events = []
    for f, ev in c.objects(raw_events, "nonverbal.events", ("behaviour", "start_s", "end_s", "intensity"),
                           "{behaviour, start_s, end_s, intensity?}"):
        behaviour = c.string(ev.get("behaviour"), f"{f}.behaviour", required=True)
        start = c.number(ev.get("start_s"), f"{f}.start_s", required=True)
        end = c.number(ev.get("end_s"), f"{f}.end_s", required=True)
        intensity = c.number(ev.get("intensity"), f"{f}.intensity")
        if start is not None and end is not None and end < start:
            c.bad(f"{f}.end_s", f"ends before it starts (start_s={start:g}, end_s={end:g})")
        elif behaviour is not None and start is not None and end is not None:
            events.append(Event(behaviour, start, end, intensity))
    features = {}
    raw_features = value.get("features", {})
    if not isinstance(raw_features, dict):
        c.bad("nonverbal.features", f"expected an object of numbers, found {_describe(raw_features)}")
        raw_features = {}
    for name, number in raw_features.items():
        checked = c.number(number, f"nonverbal.features.{name}", required=True)
        if checked is not None:
            features[name] = checked
    return Nonverbal(tuple(events), features)


def _person(value: Any, c: _Checker) -> dict[str, Scalar] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        c.bad("person", f"expected an object of named factors, found {_describe(value)}")
        return None
    out = {}
    for key, item in value.items():
        if isinstance(item, str) and lone_surrogate(item) is not None:
            c.bad(f"person.{key}", "holds a lone UTF-16 surrogate, which is not a character; fix the text")
        elif isinstance(item, (str, bool)) or (isinstance(item, (int, float)) and finite(item)):
            out[key] = item
        else:
            c.bad(f"person.{key}", "expected a string, number or boolean "
                                   f"(leave the factor out when unknown), found {_describe(item)}")
    return out
