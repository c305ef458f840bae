"""The segments' file: JSON Lines, one segment per line (see docs/data.md for each field).

``read_segments`` validates a whole file and reports every problem at once (file, line, field);
it never coerces a value to another type and never drops a row. ``check_segments`` does the same
for segments built in memory; ``as_segments`` takes what a notebook has (segments, dicts of the
file's fields, a pandas DataFrame with those columns) through the same checks; ``write_segments``
writes a file atomically.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from .atomic import atomic_write_text
from .errors import Problem, ValidationError
from .segments import Segment, segment_from_dict
from .tasks import Task


def read_segments(path: str | Path, task: Task | None = None) -> list[Segment]:
    """Read and validate a JSONL segment file.

    Raises ``ValidationError`` listing every problem (malformed JSON, missing or empty ids,
    labels outside ``task``, end before start, wrong types, unknown fields, duplicate ids).
    Blank lines are allowed and skipped; every other line must be one segment.
    """
    path = Path(path)
    problems: list[Problem] = []
    segments: list[Segment] = []
    first_line: dict[str, int] = {}
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise ValidationError(str(path), [Problem(str(path), None, f"cannot be read: {exc.strerror}")]) from None
    with handle:
        for lineno, raw in enumerate(handle, start=1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                problems.append(Problem(where, None, f"not UTF-8 text (byte {exc.start + 1} of the line); save the "
                                                     "file as UTF-8"))
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line, object_pairs_hook=_no_repeated_keys)
            except _RepeatedKey as exc:
                problems.append(Problem(where, None, f"the key {exc.args[0]!r} appears twice in one object; JSON "
                                                     "readers keep either value, so say it once"))
                continue
            except json.JSONDecodeError as exc:
                problems.append(Problem(where, None, f"malformed JSON ({exc.msg} at column {exc.colno})"))
                continue
            except RecursionError:
                problems.append(Problem(where, None, "JSON nested too deeply to read; a segment is a few levels deep"))
                continue
            except ValueError as exc:  # Python refuses integers of more than 4,300 digits
                what = ("an integer of more than 4,300 digits, which no field takes" if "digits" in str(exc)
                        else str(exc))
                problems.append(Problem(where, None, f"unreadable JSON: {what}"))
                continue
            segment = segment_from_dict(record, where, problems, task)
            sid = record.get("segment_id") if isinstance(record, dict) else None
            if isinstance(sid, str) and sid.strip():
                if sid in first_line:
                    problems.append(Problem(where, "segment_id", f"duplicate id {sid!r} "
                                            f"(first used on line {first_line[sid]})"))
                else:
                    first_line[sid] = lineno
            if segment is not None:
                segments.append(segment)
    if not problems and not segments:
        problems.append(Problem(str(path), None, "holds no segments"))
    if problems:
        raise ValidationError(str(path), problems)
    return segments


def check_segments(segments: Iterable[Segment], task: Task, where: str) -> list[Segment]:
    """Validate in-memory segments against ``task`` (labels, unique ids); every problem at once."""
    segments = list(segments)
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for i, seg in enumerate(segments):
        if seg.segment_id in seen:
            problems.append(Problem(f"{where}[{i}]", "segment_id", f"duplicate id {seg.segment_id!r} "
                                    f"(first at index {seen[seg.segment_id]})"))
        seen.setdefault(seg.segment_id, i)
        if seg.label is not None and seg.label not in task.labels:
            problems.append(Problem(f"{where}[{i}]", "label",
                                    f"{seg.label!r} is not a label of task {task.name!r}"))
    if problems:
        raise ValidationError(where, problems)
    return segments


class _RepeatedKey(ValueError):
    pass


def _no_repeated_keys(pairs: list) -> dict:
    """A JSON object whose keys are each given once (``json`` would keep the last silently)."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise _RepeatedKey(key)
        out[key] = value
    return out


def as_segments(items, task: Task | None, where: str = "segments") -> list[Segment]:
    """Segments from ``Segment`` objects, dicts of the segment file's fields, or a pandas DataFrame
    with those columns (a cell pandas left empty, NaN or None, is a field left out), validated as a
    file's lines are, every problem at once, each named by its position (``segments[3]``)."""
    if hasattr(items, "to_dict") and hasattr(items, "columns"):  # a pandas DataFrame: one row a segment
        rows = items.to_dict(orient="records")
        items = [{k: v for k, v in row.items() if not _empty_cell(v)} for row in rows]
    if isinstance(items, (str, bytes, dict, Segment)) or not isinstance(items, Iterable):
        kind = type(items).__name__
        raise ValidationError(where, [Problem(where, None, f"expected a list of segments (Segment objects, dicts of "
                                                           f"the segment file's fields, or a DataFrame), found one {kind}; "
                                                           f"wrap a single segment in a list")])
    out, problems = [], []
    for i, item in enumerate(items):
        if isinstance(item, Segment):
            out.append(item)
        else:
            segment = segment_from_dict(item, f"{where}[{i}]", problems, task)
            out.append(segment)
    if problems:
        raise ValidationError(where, problems)
    return check_segments(out, task, where) if task is not None else out


def _empty_cell(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def write_segments(path: str | Path, segments: Iterable[Segment]) -> Path:
    """Write segments as JSONL atomically (a temp file renamed into place)."""
    path = Path(path)
    lines = [json.dumps(s.to_dict(), ensure_ascii=False) for s in segments]
    return atomic_write_text(path, "".join(line + "\n" for line in lines))
