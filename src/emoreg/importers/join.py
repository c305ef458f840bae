"""``emoreg import``: join per-frame face output, transcripts, label files, person factors and
introspection into segments, by subject and time, and say what could not be aligned.

An import config (paths relative to it; ``examples/import/import.yaml`` is a complete one)::

    task: deep-shame
    context: A mock job interview.            # optional, the same for every segment
    segments: {mode: interval}                 # one segment per label interval, or
                                               # {mode: step, step_s: 2.0}: fixed windows labelled
                                               # by the interval under their midpoint
    subject_speaker: Candidate                 # whose turns give speech rate and pauses
    label_map: {smile: Rest}                   # optional: rename label values; null drops (counted)
    rules: my_face_rules.yaml                  # optional: a copy of emoreg/data/openface_rules.yaml
    person: persons.csv                        # optional: subject_id + one column per factor
    introspection: introspection.csv           # optional: subject_id, start_s, end_s, text
    sessions:
      - subject: P01
        session: P01-interview                 # optional (default: the subject)
        face: {openface: P01.csv}              # or {pyfeat: P01.csv, fps: 25}
        speech: {whisper: P01.json}            # or {subtitles: P01.srt} or {elan: P01.eaf, tiers: [A, B]}
        labels: {elan: P01.eaf, tier: strategy}  # or {nova: P01.annotation}
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..corpora.base import Corpus, sha256_file
from ..errors import EmoregError, Problem, ValidationError
from ..segments import Nonverbal, Segment, Turn
from ..tasks import load_task
from . import read_table
from .face import FaceTrack, load_rules, read_openface, read_pyfeat
from .speech import Interval, read_eaf, read_nova, read_subtitles, read_whisper

TOP_KEYS = ("task", "context", "segments", "subject_speaker", "label_map", "rules", "person", "introspection", "sessions")
SESSION_KEYS = ("subject", "session", "face", "speech", "labels")


def _windows(labels: list[Interval], spec: dict[str, Any]) -> list[tuple[float, float, str]]:
    if spec.get("mode", "interval") == "interval":
        return [(iv.start_s, iv.end_s, iv.value) for iv in labels]
    step = spec.get("step_s", 0)
    if isinstance(step, bool) or not isinstance(step, (int, float)) or step != step or step in (float("inf"),):
        raise EmoregError(f"segments: step_s must be a number of seconds above 0, found {step!r}; "
                          "use {mode: step, step_s: 2.0}")
    if spec.get("mode") != "step" or step <= 0:
        raise EmoregError("segments: use {mode: interval} or {mode: step, step_s: SECONDS > 0}")
    if not labels:
        return []
    out = []
    start = labels[0].start_s
    while start < labels[-1].end_s - 1e-9:
        middle = start + step / 2
        covering = [iv for iv in labels if iv.start_s <= middle < iv.end_s]
        out.append((start, start + step, covering[0].value if covering else None))
        start += step
    return out


def _speech(spec: dict[str, Any] | None, base: Path) -> list[Interval]:
    if not spec:
        return []
    if "whisper" in spec:
        return read_whisper(base / spec["whisper"], spec.get("speaker", "speaker"))
    if "subtitles" in spec:
        return read_subtitles(base / spec["subtitles"], spec.get("speaker", "speaker"))
    if "elan" in spec:
        tiers = read_eaf(base / spec["elan"], spec.get("tiers"))
        return sorted((iv for ivs in tiers.values() for iv in ivs), key=lambda iv: iv.start_s)
    raise EmoregError(f"speech: expected whisper, subtitles or elan, got {sorted(spec)}")


def _labels(spec: dict[str, Any], base: Path) -> list[Interval]:
    """The label intervals of one session, in time order: each of some length, none overlapping
    another (each point in time has one label)."""
    if "elan" in spec:
        if "tier" not in spec:
            raise EmoregError("labels: an ELAN label file needs the tier that holds the labels (tier: NAME)")
        where, labels = f"{base / spec['elan']} (tier {spec['tier']})", \
            read_eaf(base / spec["elan"], [spec["tier"]])[spec["tier"]]
    elif "nova" in spec:
        where, labels = str(base / spec["nova"]), read_nova(base / spec["nova"])
    else:
        raise EmoregError(f"labels: expected elan or nova, got {sorted(spec)}")
    for before, label in zip([None, *labels], labels):
        if label.end_s <= label.start_s:
            raise EmoregError(f"{where}: the label {label.value!r} at {label.start_s:g} s has no length; "
                              "a segment needs a start before its end: fix or delete it")
        if before is not None and label.start_s < before.end_s:
            raise EmoregError(f"{where}: the labels {before.value!r} ({before.start_s:g}-{before.end_s:g} s) and "
                              f"{label.value!r} ({label.start_s:g}-{label.end_s:g} s) overlap; one moment has one "
                              "label: fix the boundaries")
    return labels


def _speech_features(turns: list[Interval], start: float, end: float, speaker: str | None) -> dict[str, float]:
    """speech_rate_wps over the subject's turns that start in the window; pause_before_s: the silence
    before the first of them since the previous turn of anyone ended."""
    mine = [t for t in turns if start <= t.start_s < end and (speaker is None or t.speaker == speaker)]
    if not mine:
        return {}
    duration = sum(t.end_s - t.start_s for t in mine)
    features = {"speech_rate_wps": sum(t.words or 0 for t in mine) / duration} if duration > 0 else {}
    before = [t for t in turns if t.end_s <= mine[0].start_s]
    if before:
        features["pause_before_s"] = mine[0].start_s - max(t.end_s for t in before)
    return features


def import_segments(config_path: str | Path) -> Corpus:
    config_path = Path(config_path)
    base = config_path.parent
    from ..yamlio import read_yaml

    config = read_yaml(config_path, "import config")
    where = str(config_path)
    if not isinstance(config, dict):
        raise ValidationError(where, [Problem(where, None, "expected a mapping with task and sessions (see "
                                                           "examples/import/import.yaml)")])
    problems = [Problem(where, k, f"unknown key (valid: {', '.join(TOP_KEYS)})") for k in (config or {}) if k not in TOP_KEYS]
    sessions = (config or {}).get("sessions")
    if not isinstance(sessions, list) or not sessions:
        problems.append(Problem(where, "sessions", "expected a list of sessions with subject and labels"))
        sessions = []
    for i, s in enumerate(sessions):
        if not isinstance(s, dict) or "subject" not in s or "labels" not in s:
            problems.append(Problem(where, f"sessions[{i}]", "needs at least subject and labels"))
        else:
            problems += [Problem(where, f"sessions[{i}].{k}", f"unknown key (valid: {', '.join(SESSION_KEYS)})")
                         for k in s if k not in SESSION_KEYS]
            for part in ("face", "speech", "labels"):
                if part in s and not isinstance(s[part], dict):
                    problems.append(Problem(where, f"sessions[{i}].{part}", f"expected a mapping such as "
                                            f"{{elan: FILE.eaf, tier: NAME}}, found {s[part]!r}"))
    names = [str(s.get("session") or s.get("subject")) for s in sessions if isinstance(s, dict)]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(Problem(where, "sessions", f"session {name!r} appears {names.count(name)} times; its "
                                "segment ids would repeat: give each session its own `session:` name"))
    if "task" not in (config or {}):
        problems.append(Problem(where, "task", "missing; name the label scheme (e.g. deep-shame or a task YAML)"))
    if problems:
        raise ValidationError(where, problems)
    task_spec = config["task"]
    task = load_task(base / task_spec if str(task_spec).endswith((".yaml", ".yml")) else task_spec)
    rules = load_rules(base / config["rules"] if config.get("rules") else None)
    label_map = config.get("label_map") or {}
    speaker = config.get("subject_speaker")
    files: dict[str, str] = {}
    notes: list[str] = []
    persons = _table(base, config.get("person"), ["subject_id"], files)
    intro = _table(base, config.get("introspection"), ["subject_id", "start_s", "end_s", "text"], files)
    intro_used: set[int] = set()
    segments: list[Segment] = []
    bad_labels: list[Problem] = []
    dropped = 0
    for spec in sessions:
        subject = str(spec["subject"])
        session = str(spec.get("session") or subject)
        for part in ("face", "speech", "labels"):  # provenance: sha256 of every file read
            for key, name in (spec.get(part) or {}).items():
                if key in ("openface", "pyfeat", "whisper", "subtitles", "elan", "nova") and (base / name).is_file():
                    files[str(base / name)] = sha256_file(base / name)
        person = None  # the subject's factors, the same for all of its segments
        if persons is not None:
            rows = persons[persons["subject_id"].astype(str) == subject]
            if len(rows):
                person = {k: _scalar(v) for k, v in rows.iloc[0].items() if k != "subject_id" and _scalar(v) is not None}
        labels = _labels(spec["labels"], base)
        elan = next((str((base / part["elan"]).resolve()) for part in (spec.get("labels"), spec.get("speech"))
                     if isinstance(part, dict) and "elan" in part), None)  # where `predict --export elan` writes back
        turns = _speech(spec.get("speech"), base)
        track = None
        if spec.get("face"):
            face = spec["face"]
            frames = read_pyfeat(base / face["pyfeat"], face.get("fps")) if "pyfeat" in face else \
                read_openface(base / face["openface"])
            track = FaceTrack.build(frames, rules)
            if track.skipped:
                notes.append(f"{session}: {track.skipped} of {len(frames)} face frames skipped "
                             f"(success 0 or confidence below {rules.get('min_confidence')})")
        for n, (start, end, value) in enumerate(_windows(labels, config.get("segments") or {})):
            label = label_map.get(value, value) if value is not None else None
            if label is None:
                dropped += 1
                continue
            if label not in task.labels:
                bad_labels.append(Problem(f"{session}", "label", f"{value!r} at {start:.2f}-{end:.2f} s is not a label "
                                          f"of task {task.name!r}; rename it with label_map"))
                continue
            nonverbal = track.nonverbal(start, end) if track else None
            speech = _speech_features(turns, start, end, speaker)
            if speech:
                nonverbal = Nonverbal(nonverbal.events if nonverbal else (), {**(nonverbal.features if nonverbal else {}), **speech})
            introspection = None
            if intro is not None:
                hits = intro[(intro["subject_id"].astype(str) == subject) & (intro["start_s"] < end) & (intro["end_s"] > start)]
                intro_used.update(hits.index.tolist())
                introspection = " ".join(hits["text"].astype(str)) or None
            segments.append(Segment(
                segment_id=f"{session}-{n:04d}", subject_id=subject, session_id=session, start_s=start, end_s=end,
                label=label, context=config.get("context"),
                transcript=tuple(Turn(t.speaker or "speaker", t.value, t.start_s) for t in turns if t.start_s < end) or None,
                nonverbal=nonverbal, person=person, introspection=introspection,
                meta={"elan": elan} if elan else {}))
        if track is not None:
            outside = len(track.frames) - len(track.used)
            if outside:
                notes.append(f"{session}: {outside} face frame(s) fall outside every segment")
    if bad_labels:
        raise ValidationError(where, bad_labels)
    if dropped:
        notes.append(f"{dropped} window(s) without a label, or mapped to null, made no segment")
    subjects = {str(s["subject"]) for s in sessions}
    if persons is not None:
        missing = sorted(subjects - set(persons["subject_id"].astype(str)))
        if missing:
            notes.append(f"{len(missing)} subject(s) without a person row: {', '.join(missing)}")
    if intro is not None and len(intro) - len(intro_used):
        notes.append(f"{len(intro) - len(intro_used)} introspection row(s) match no segment (subject and time)")
    return Corpus(name=config_path.stem, task=task, segments=segments, files=files, notes=notes)


def _scalar(value: Any):
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if hasattr(value, "item") else value


def _table(base: Path, name: str | None, columns: list[str], files: dict[str, str]) -> pd.DataFrame | None:
    if not name:
        return None
    path = base / name
    table = read_table(path, "table")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise EmoregError(f"{path}: missing column(s) {', '.join(missing)} (it has: {', '.join(table.columns)})")
    for column in ("start_s", "end_s"):  # times are numbers: text in one is an error, not a row lost later
        if column in columns:
            numbers = pd.to_numeric(table[column], errors="coerce")
            bad = numbers.isna() | ~np.isfinite(numbers.fillna(0))
            if bad.any():
                at = int(np.flatnonzero(bad.to_numpy())[0])
                raise EmoregError(f"{path}: {column} at CSV line {at + 2} is {table[column].iloc[at]!r}; expected "
                                  "seconds as a number")
            table[column] = numbers
    if "text" in columns:
        empty = table["text"].isna() | (table["text"].astype("string").str.strip() == "")
        if empty.any():
            at = int(np.flatnonzero(empty.to_numpy())[0])
            raise EmoregError(f"{path}: text at CSV line {at + 2} is empty; every row needs what the person said "
                              "(remove the row otherwise)")
    if columns == ["subject_id"]:  # a person table: one row per subject
        ids = table["subject_id"].astype(str)
        repeated = sorted(set(ids[ids.duplicated()]))
        if repeated:
            raise EmoregError(f"{path}: subject(s) {', '.join(repeated[:5])} have more than one row; a subject's "
                              "person factors are one row: merge them")
    files[str(path)] = sha256_file(path)
    return table
