"""Predictions back into the annotation tools: ELAN tiers, NOVA annotations, CSV.

``emoreg predict MODEL --corpus ... --out P.jsonl --export elan|nova|csv --export-dir DIR``:

* ``elan``: for each session imported from an ELAN file, a copy of that file with two new tiers,
  ``emoreg:<task>`` (the predicted strategy of each segment, aligned to the segment) and
  ``emoreg:<task>:p`` (its probability, same alignment). Annotators open it, review, correct the
  label tier, and ``emoreg import`` reads it back as labels (``labels: {elan: FILE, tier:
  "emoreg:<task>"}``). An older emoreg tier of the same name is replaced.
* ``nova``: per session, a NOVA discrete annotation (``<session>.emoreg.annotation`` and its data
  file ``...annotation~``: ``start;end;label id;confidence``), the scheme being the task's labels.
* ``csv``: one table, a row per segment with its times, the predicted label and every probability.

Segments need times (``start_s``, ``end_s``) for ELAN and NOVA.
"""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text
from .errors import EmoregError

FORMATS = ("elan", "nova", "csv")


def tier_name(task_name: str) -> str:
    return f"emoreg:{task_name}"


def _by_session(segments, rows):
    sessions: dict[str, list[tuple[Any, dict]]] = {}
    for segment, row in zip(segments, rows):
        sessions.setdefault(segment.session_id, []).append((segment, row))
    return sessions


def _timed(pairs, fmt: str):
    untimed = [s.segment_id for s, _ in pairs if s.start_s is None or s.end_s is None]
    if untimed:
        raise EmoregError(f"--export {fmt}: segment {untimed[0]!r} has no start_s/end_s; {fmt} annotations need "
                          "times (use --export csv)")
    return sorted(pairs, key=lambda p: (p[0].start_s, p[0].end_s))


def export(segments, rows, task, fmt: str, out: Path) -> list[Path]:
    """Write the predictions ``rows`` (one per segment) in ``fmt`` under the folder ``out``."""
    if fmt not in FORMATS:
        raise EmoregError(f"--export: expected one of {', '.join(FORMATS)}, found {fmt!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        return [_csv(segments, rows, task, out / "predictions.csv")]
    written = []
    for session, pairs in _by_session(segments, rows).items():
        pairs = _timed(pairs, fmt)
        written.append(_elan(session, pairs, task, out) if fmt == "elan" else _nova(session, pairs, task, out))
    return written


def _csv(segments, rows, task, path: Path) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["session_id", "segment_id", "subject_id", "start_s", "end_s", "predicted",
                     *[f"p_{label}" for label in task.labels]])
    for s, r in zip(segments, rows):
        writer.writerow([s.session_id, s.segment_id, s.subject_id, s.start_s, s.end_s, r["predicted"],
                         *[f"{r['proba'][label]:.6f}" for label in task.labels]])
    return atomic_write_text(path, buffer.getvalue())


def _elan(session: str, pairs, task, out: Path) -> Path:
    sources = {s.meta.get("elan") for s, _ in pairs}
    if None in sources or len(sources) != 1:
        raise EmoregError(f"--export elan: session {session!r} was not imported from one ELAN file (`emoreg import` "
                          "with labels or speech from an .eaf records it); use --export nova or csv")
    source = Path(sources.pop())
    try:
        tree = ET.parse(source)
    except (OSError, ET.ParseError) as exc:
        raise EmoregError(f"--export elan: cannot read {source}, the session's ELAN file: {exc}") from None
    root = tree.getroot()
    name = tier_name(task.name)
    for tier in list(root.iter("TIER")):
        if tier.get("TIER_ID") in (name, name + ":p"):
            root.remove(tier)
    order = root.find("TIME_ORDER")
    if order is None:
        order = ET.SubElement(root, "TIME_ORDER")
    used = {slot.get("TIME_SLOT_ID") for slot in root.iter("TIME_SLOT")}
    ids = {a.get("ANNOTATION_ID") for a in root.iter("ALIGNABLE_ANNOTATION")}
    if root.find("LINGUISTIC_TYPE[@LINGUISTIC_TYPE_ID='emoreg-lt']") is None:
        ET.SubElement(root, "LINGUISTIC_TYPE", {"GRAPHIC_REFERENCES": "false", "LINGUISTIC_TYPE_ID": "emoreg-lt",
                                                "TIME_ALIGNABLE": "true"})

    def new_id(prefix: str, taken: set[str]) -> str:
        n = len(taken)
        while f"{prefix}{n}" in taken:
            n += 1
        taken.add(f"{prefix}{n}")
        return f"{prefix}{n}"

    labels = ET.Element("TIER", {"LINGUISTIC_TYPE_REF": "emoreg-lt", "TIER_ID": name})
    confidence = ET.Element("TIER", {"LINGUISTIC_TYPE_REF": "emoreg-lt", "TIER_ID": name + ":p"})
    for segment, row in pairs:
        slots = []
        for t in (segment.start_s, segment.end_s):
            slot = new_id("emoreg-ts", used)
            ET.SubElement(order, "TIME_SLOT", {"TIME_SLOT_ID": slot, "TIME_VALUE": str(round(t * 1000))})
            slots.append(slot)
        for tier, value in ((labels, row["predicted"]), (confidence, f"{row['proba'][row['predicted']]:.3f}")):
            ann = ET.SubElement(ET.SubElement(tier, "ANNOTATION"), "ALIGNABLE_ANNOTATION", {
                "ANNOTATION_ID": new_id("emoreg-a", ids), "TIME_SLOT_REF1": slots[0], "TIME_SLOT_REF2": slots[1]})
            ET.SubElement(ann, "ANNOTATION_VALUE").text = value
    # tiers go before the linguistic types, as ELAN writes them
    at = next((i for i, child in enumerate(root) if child.tag == "LINGUISTIC_TYPE"), len(root))
    root.insert(at, confidence)
    root.insert(at, labels)
    ET.indent(tree)
    path = out / source.name
    atomic_write_text(path, ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n")
    return path


def _nova(session: str, pairs, task, out: Path) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in session)
    root = ET.Element("annotation", {"ssi-v": "3"})
    ET.SubElement(root, "info", {"ftype": "ASCII", "size": str(len(pairs))})
    ET.SubElement(root, "meta", {"annotator": "emoreg", "role": "prediction"})
    scheme = ET.SubElement(root, "scheme", {"name": task.name, "type": "DISCRETE"})
    for i, label in enumerate(task.labels):
        ET.SubElement(scheme, "item", {"name": label, "id": str(i)})
    ET.indent(root)
    path = out / f"{safe}.emoreg.annotation"
    atomic_write_text(path, ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n")
    lines = [f"{s.start_s:.3f};{s.end_s:.3f};{task.labels.index(r['predicted'])};{r['proba'][r['predicted']]:.6f}"
             for s, r in pairs]
    atomic_write_text(Path(str(path) + "~"), "\n".join(lines) + "\n")
    return path
