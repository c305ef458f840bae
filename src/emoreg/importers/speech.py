"""Speech and annotations with times: Whisper-style JSON, SRT and WebVTT subtitles, ELAN ``.eaf``
tiers and NOVA discrete annotations. Each reader returns time intervals; ``join`` turns them into
transcripts, speech features and labels."""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import EmoregError


@dataclass(frozen=True)
class Interval:
    """A stretch of time with a value: an utterance (speaker + text) or a label."""

    start_s: float
    end_s: float
    value: str
    speaker: str | None = None
    words: int | None = None  # number of words, where the source counts them


def _check_order(intervals: list[Interval], path: Path) -> list[Interval]:
    for i, iv in enumerate(intervals):
        if iv.end_s < iv.start_s:
            raise EmoregError(f"{path}: item {i + 1} ends before it starts ({iv.start_s} -> {iv.end_s})")
    return sorted(intervals, key=lambda iv: (iv.start_s, iv.end_s))


def read_whisper(path: str | Path, default_speaker: str = "speaker") -> list[Interval]:
    """Whisper-style JSON: ``{"segments": [{"start", "end", "text", "speaker"?, "words"?}]}``
    (whisperX adds ``speaker`` and ``words``)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise EmoregError(f"{path}: not UTF-8 text (byte {exc.start + 1}); Whisper writes UTF-8 JSON") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise EmoregError(f"cannot read Whisper JSON {path}: {exc}") from None
    segments = data.get("segments") if isinstance(data, dict) else None
    if not isinstance(segments, list):
        raise EmoregError(f"{path}: expected an object with a list 'segments' (Whisper's output format)")
    out, problems = [], []
    for i, seg in enumerate(segments):
        if not isinstance(seg, dict) or not {"start", "end", "text"} <= set(seg):
            problems.append(f"segments[{i}] needs start, end and text")
            continue
        times = [_time(seg[k]) for k in ("start", "end")]
        if None in times:
            bad = "start" if times[0] is None else "end"
            problems.append(f"segments[{i}].{bad} is {seg[bad]!r}; expected a finite number of seconds")
            continue
        if not isinstance(seg["text"], str) or not seg["text"].strip():
            problems.append(f"segments[{i}].text is {seg['text']!r}; expected the words as a non-empty string "
                            "(remove a segment without words)")
            continue
        speaker = seg.get("speaker")
        if speaker is not None and not isinstance(speaker, str):
            problems.append(f"segments[{i}].speaker is {speaker!r}; expected a name")
            continue
        words = seg.get("words")
        out.append(Interval(times[0], times[1], seg["text"].strip(), speaker or default_speaker,
                            len(words) if isinstance(words, list) else len(seg["text"].split())))
    if problems:
        raise EmoregError(f"{path}: {len(problems)} problem(s), nothing imported: " + "; ".join(problems[:10]))
    return _check_order(out, path)


def _time(value) -> float | None:
    """Seconds from a JSON number (not a string, boolean, null, NaN or infinity)."""
    import math

    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value) if math.isfinite(value) else None
    except OverflowError:
        return None


_TIME = re.compile(r"(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{3})")


def _seconds(stamp: str, path: Path, line: int) -> float:
    match = _TIME.fullmatch(stamp.strip())
    if not match:
        raise EmoregError(f"{path}:{line}: cannot read the time {stamp.strip()!r} (expected HH:MM:SS,mmm)")
    h, m, s, ms = match.groups()
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def read_subtitles(path: str | Path, default_speaker: str = "speaker") -> list[Interval]:
    """SRT or WebVTT cues. The speaker comes from a WebVTT voice tag (``<v Anna>``) or a leading
    ``Name:``; otherwise ``default_speaker``."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise EmoregError(f"{path}: not UTF-8 text (byte {exc.start + 1}); save the subtitles as UTF-8") from None
    except OSError as exc:
        raise EmoregError(f"cannot read subtitles {path}: {exc.strerror}") from None
    out, i = [], 0
    while i < len(lines):
        if "-->" not in lines[i]:
            i += 1
            continue
        start_text, end_text = lines[i].split("-->")
        start = _seconds(start_text, path, i + 1)
        end = _seconds(end_text.split()[0], path, i + 1)
        text_lines = []
        i += 1
        while i < len(lines) and lines[i].strip():
            text_lines.append(lines[i].strip())
            i += 1
        text = " ".join(text_lines)
        speaker = default_speaker
        voice = re.match(r"<v(?:\.[^ >]+)?\s+([^>]+)>", text)
        if voice:
            speaker = voice.group(1).strip()
        else:
            named = re.match(r"([A-Z][\w .'-]{0,30}):\s+", text)
            if named:
                speaker = named.group(1).strip()
                text = text[named.end():]
        text = re.sub(r"<[^>]+>", "", text).strip()
        out.append(Interval(start, end, text, speaker, len(text.split())))
    if not out:
        raise EmoregError(f"{path}: no subtitle cues found (lines like '00:00:01,000 --> 00:00:02,500')")
    return _check_order(out, path)


def read_eaf(path: str | Path, tiers: list[str] | None = None) -> dict[str, list[Interval]]:
    """ELAN ``.eaf``: the time-aligned annotations of each tier (all tiers, or those named)."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise EmoregError(f"cannot read ELAN file {path}: {exc}") from None
    slots = {}
    for slot in root.iter("TIME_SLOT"):
        value, slot_id = slot.get("TIME_VALUE"), slot.get("TIME_SLOT_ID")
        if slot_id in slots:
            raise EmoregError(f"{path}: time slot id {slot_id} is used twice (ELAN writes each once); a boundary would "
                              "move to the second one's time: fix the file or save it again from ELAN")
        slots[slot_id] = None
        if value is not None:
            if not value.strip().isdigit() or len(value.strip()) > 12:  # 12 digits: 31 years of milliseconds
                raise EmoregError(f"{path}: time slot {slot_id} has TIME_VALUE {value[:20]!r}; ELAN writes "
                                  "whole milliseconds (e.g. \"2000\"): fix the file or save it again from ELAN")
            slots[slot_id] = int(value) / 1000
    found: dict[str, Any] = {}
    for tier in root.iter("TIER"):
        if tier.get("TIER_ID") in found:
            raise EmoregError(f"{path}: two tiers are called {tier.get('TIER_ID')!r} (ELAN keeps tier ids unique); "
                              "rename one in ELAN")
        found[tier.get("TIER_ID")] = tier
    wanted = tiers if tiers is not None else list(found)
    missing = [t for t in wanted if t not in found]
    if missing:
        raise EmoregError(f"{path}: no tier(s) {', '.join(missing)} (tiers: {', '.join(found)})")
    span = _spans(root, slots, path)
    out = {}
    for name in wanted:
        intervals = []
        for ann in found[name].iter():
            if ann.tag not in ("ALIGNABLE_ANNOTATION", "REF_ANNOTATION"):
                continue
            start, end = span(ann.get("ANNOTATION_ID"), name)
            value = (ann.findtext("ANNOTATION_VALUE") or "").strip()
            intervals.append(Interval(start, end, value, name, len(value.split())))
        out[name] = _check_order(intervals, path)
    return out


def _spans(root, slots: dict, path: Path):
    """The time span of an annotation, computed when asked (an unaligned or broken annotation on a
    tier nobody reads is no error): an alignable one's from its time slots; a reference annotation
    (a tier that depends on another) takes its parent's span, and the references that subdivide one
    parent symbolically (ELAN's Symbolic_Subdivision) share it in equal parts, in the order ELAN
    chains them (PREVIOUS_ANNOTATION), as ELAN draws them."""
    spans: dict[str, tuple[float, float] | None] = {}
    for ann in root.iter("ALIGNABLE_ANNOTATION"):
        start, end = slots.get(ann.get("TIME_SLOT_REF1")), slots.get(ann.get("TIME_SLOT_REF2"))
        spans[ann.get("ANNOTATION_ID")] = None if start is None or end is None else (start, end)
    refs = {a.get("ANNOTATION_ID"): a for a in root.iter("REF_ANNOTATION")}
    children: dict[str, list] = {}
    for ann in refs.values():
        children.setdefault(ann.get("ANNOTATION_REF"), []).append(ann)

    def span(annotation_id: str, tier: str, seen: tuple[str, ...] = ()) -> tuple[float, float]:
        if annotation_id in spans:
            if spans[annotation_id] is None:
                raise EmoregError(f"{path}: annotation {annotation_id} (read for tier {tier}) has an unaligned time "
                                  "slot; align it in ELAN first")
            return spans[annotation_id]
        ann = refs.get(annotation_id)
        parent = ann.get("ANNOTATION_REF") if ann is not None else None
        if ann is None or parent in seen or (parent not in spans and parent not in refs):
            raise EmoregError(f"{path}: annotation {annotation_id} refers to annotation {parent}, which is not in the "
                              "file (or refers back to it); save the file again from ELAN")
        start, end = span(parent, tier, seen + (annotation_id,))
        siblings = _chain(children[parent])
        k, n = siblings.index(ann), len(siblings)
        spans[annotation_id] = (start + (end - start) * k / n, start + (end - start) * (k + 1) / n)
        return spans[annotation_id]

    return span


def _chain(siblings: list) -> list:
    """References to one parent in ELAN's order: the first has no PREVIOUS_ANNOTATION, each next
    names the one before (file order where the chain is not given)."""
    by_previous = {a.get("PREVIOUS_ANNOTATION"): a for a in siblings}
    if None not in by_previous or len(by_previous) != len(siblings):
        return siblings
    out = [by_previous[None]]
    while out[-1].get("ANNOTATION_ID") in by_previous and len(out) < len(siblings):
        out.append(by_previous[out[-1].get("ANNOTATION_ID")])
    return out if len(out) == len(siblings) else siblings


def read_nova(path: str | Path) -> list[Interval]:
    """A NOVA discrete annotation: ``X.annotation`` (XML with the scheme's items) and its data
    file ``X.annotation~`` (lines ``start;end;item id;confidence``). Rows with the id -1 (NOVA's
    garbage class) are kept as the label ``GARBAGE``, so nothing is dropped silently."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise EmoregError(f"cannot read NOVA annotation {path}: {exc}") from None
    scheme = root.find("scheme")
    if scheme is None or scheme.get("type", "").upper() != "DISCRETE":
        raise EmoregError(f"{path}: expected a NOVA annotation with a DISCRETE scheme")
    items = {}
    for item in scheme.iter("item"):
        raw = item.get("id")
        if raw is None or not raw.strip().lstrip("-").isdigit():
            raise EmoregError(f"{path}: scheme item {item.get('name')!r} has id {raw!r}; NOVA ids are whole numbers")
        if int(raw) in items:
            raise EmoregError(f"{path}: scheme items {items[int(raw)]!r} and {item.get('name')!r} share the id {raw}; "
                              "every label would be read as the second: give each item its own id")
        items[int(raw)] = item.get("name")
    data = Path(str(path) + "~")
    if not data.is_file():
        raise EmoregError(f"{path}: its data file {data.name} is missing (NOVA writes both)")
    out = []
    try:
        text = data.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise EmoregError(f"{data}: not UTF-8 text (byte {exc.start + 1})") from None
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(";")
        try:
            start, end, item = float(parts[0]), float(parts[1]), parts[2].strip()
        except (ValueError, IndexError):
            raise EmoregError(f"{data}:{n}: expected 'start;end;item id;confidence', found {line!r}") from None
        if not (math.isfinite(start) and math.isfinite(end)) or start < 0:
            raise EmoregError(f"{data}:{n}: start and end must be finite seconds from 0 on, found {line!r}")
        try:
            number = float(item)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and number.is_integer()):
            raise EmoregError(f"{data}:{n}: item id {item!r} is not a whole number, in {line!r}")
        item = int(number)
        if item != -1 and item not in items:
            raise EmoregError(f"{data}:{n}: item id {item} is not in the scheme ({items})")
        out.append(Interval(start, end, items.get(item, "GARBAGE")))
    if not out:
        raise EmoregError(f"{data}: holds no annotations, so its session would make no segment; annotate it in NOVA, "
                          "or leave the session out of the import config")
    return _check_order(out, data)
