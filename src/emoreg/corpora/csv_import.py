"""Users' own corpora from a CSV file and a column mapping in YAML.

One CSV row is one turn of a conversation. Rows with a label become segments; rows without a
label are still turns of the transcript of later segments (like the therapist turns of AnnoMI).
Example mapping (``examples/csv/interviews.yaml`` is a complete one)::

    csv: my_corpus.csv          # relative to this YAML file
    columns:                    # emoreg field: CSV column
      subject_id: participant   # required
      session_id: session       # optional (default: the subject)
      segment_id: row_id        # optional (default: session id + row number)
      start_s: start            # optional, seconds
      end_s: end                # optional, seconds
      label: strategy           # rows with an empty label are turns, not segments
      speaker: speaker          # with text: the transcript source
      text: utterance
      context: situation
      introspection: interview_answer
    person: [age, gender]       # subject-level factors (numbers where they parse as numbers)
    features: [au12_mean]       # numeric nonverbal features of the row
    history: true               # transcript = the session's earlier rows + this one (default)

Rows are taken in file order within each session. Every problem (missing column, a number that
does not parse, an empty id, a label outside the task) is reported at once with its CSV line.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import EmoregError, Problem, ValidationError
from ..segment_files import check_segments
from ..segments import Nonverbal, Segment, Turn
from ..tasks import Task
from .base import Corpus, sha256_file

FIELDS = ("subject_id", "session_id", "segment_id", "start_s", "end_s", "label", "speaker",
          "text", "context", "introspection")
KEYS = ("csv", "columns", "person", "features", "history")


def _parse_number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def load_csv_corpus(config_path: str | Path, task: Task) -> Corpus:
    config_path = Path(config_path)
    from ..yamlio import read_yaml

    config = read_yaml(config_path, "CSV mapping")
    where = str(config_path)
    problems: list[Problem] = []
    if not isinstance(config, dict):
        raise ValidationError(where, [Problem(where, None, "expected a mapping with 'csv' and 'columns'")])
    for key in config:
        if key not in KEYS:
            problems.append(Problem(where, key, f"unknown key (allowed: {', '.join(KEYS)})"))
    columns = config.get("columns")
    if not isinstance(columns, dict) or "subject_id" not in columns:
        problems.append(Problem(where, "columns", "expected a mapping that names at least the subject_id column"))
        columns = {}
    for name in columns:
        if name not in FIELDS:
            problems.append(Problem(where, f"columns.{name}", f"unknown field (allowed: {', '.join(FIELDS)})"))
    if ("speaker" in columns) != ("text" in columns):
        problems.append(Problem(where, "columns", "name both speaker and text, or neither"))
    person = config.get("person", []) or []
    features = config.get("features", []) or []
    for key, value in (("person", person), ("features", features)):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            problems.append(Problem(where, key, "expected a list of column names"))
    history = config.get("history", True)
    if not isinstance(history, bool):
        problems.append(Problem(where, "history", "expected true or false"))
    if not isinstance(config.get("csv"), str):
        problems.append(Problem(where, "csv", "expected the path of the CSV file"))
    if problems:
        raise ValidationError(where, problems)

    csv_path = (config_path.parent / config["csv"]).resolve()
    try:
        df = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError) as exc:
        raise EmoregError(f"{csv_path}: cannot read the CSV file: {exc}") from None
    needed = list(columns.values()) + person + features
    missing = [c for c in dict.fromkeys(needed) if c not in df.columns]
    if missing:
        raise EmoregError(f"{csv_path}: column(s) {', '.join(missing)} named in {config_path.name} "
                          f"are not in the file (it has: {', '.join(df.columns)})")

    def cell(row: dict[str, Any], name: str) -> str:
        return row[columns[name]].strip() if name in columns else ""

    segments: list[Segment] = []
    turns_by_session: dict[str, list[Turn]] = {}
    unlabelled = 0
    for index, row in enumerate(df.to_dict("records")):
        line = f"{csv_path}:{index + 2}"  # header is line 1
        subject = cell(row, "subject_id")
        session = cell(row, "session_id") or subject
        if not subject:
            problems.append(Problem(line, columns["subject_id"], "empty subject id"))
        numbers = {}
        for name in ("start_s", "end_s"):
            text = cell(row, name)
            numbers[name] = _parse_number(text) if text else None
            if text and numbers[name] is None:
                problems.append(Problem(line, columns[name], f"expected a number of seconds, found {text!r}"))
        if None not in (numbers["start_s"], numbers["end_s"]) and numbers["end_s"] < numbers["start_s"]:
            problems.append(Problem(line, columns["end_s"], "ends before it starts"))
        turns = turns_by_session.setdefault(session, [])
        if "text" in columns and cell(row, "text"):
            speaker = cell(row, "speaker")
            if not speaker:
                problems.append(Problem(line, columns["speaker"], "a turn with text needs a speaker"))
            turns.append(Turn(speaker, cell(row, "text"), numbers["start_s"]))
        label = cell(row, "label")
        if "label" in columns and not label:
            unlabelled += 1
            continue
        if label and label not in task.labels:
            problems.append(Problem(line, columns["label"], f"{label!r} is not a label of task "
                                    f"{task.name!r} ({', '.join(task.labels)})"))
        feats = {}
        for column in features:
            text = row[column].strip()
            if text:
                value = _parse_number(text)
                if value is None:
                    problems.append(Problem(line, column, f"expected a number, found {text!r}"))
                else:
                    feats[column] = value
        factors = {}
        for column in person:
            text = row[column].strip()
            if text:
                number = _parse_number(text)
                factors[column] = number if number is not None else text
        segments.append(Segment(
            segment_id=cell(row, "segment_id") or f"{session}-r{index + 2}",
            subject_id=subject or "?",
            session_id=session or "?",
            start_s=numbers["start_s"], end_s=numbers["end_s"], label=label or None,
            context=cell(row, "context") or None,
            transcript=(tuple(turns) if history else tuple(turns[-1:])) if "text" in columns else None,
            nonverbal=Nonverbal(features=feats) if feats else None,
            person=factors or None,
            introspection=cell(row, "introspection") or None,
        ))
    if problems:
        raise ValidationError(str(csv_path), problems)
    check_segments(segments, task, str(csv_path))
    notes = []
    if unlabelled:
        notes.append(f"{unlabelled} row(s) without a label were read as transcript turns, not segments")
    return Corpus(
        name=config_path.stem, task=task, segments=segments,
        files={str(csv_path): sha256_file(csv_path), str(config_path): sha256_file(config_path)},
        notes=notes,
    )
