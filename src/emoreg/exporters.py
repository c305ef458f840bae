"""Predictions back into the annotation tools: ELAN tiers, NOVA annotations, CSV.

``emoreg predict MODEL --corpus ... --out P.jsonl --export elan|nova|csv --export-dir DIR``:

* ``elan``: for each session imported from an ELAN file, a copy of that file (``<name>.emoreg.eaf``)
  with two new tiers, ``emoreg:<task>`` (the predicted strategy of each segment, aligned to the
  segment) and ``emoreg:<task>:p`` (its probability, same alignment). Annotators open it, review,
  correct the label tier, and ``emoreg import`` reads it back as labels (``labels: {elan: FILE,
  tier: "emoreg:<task>"}``). An older emoreg tier of the same name is replaced with its time slots;
  new time slots join the TIME_ORDER in time order, the linguistic type after the file's own.
* ``nova``: per session, a NOVA discrete annotation (``<session>.emoreg.annotation`` and its data
  file ``...annotation~``: ``start;end;label id;confidence``), the scheme being the task's labels.
* ``csv``: one table, a row per segment with its times, the predicted label and every probability.

Segments need times (``start_s``, ``end_s``) for ELAN and NOVA. Every output is planned before
anything is written: no two outputs share a path (sessions whose names would collide get a short
hash of their id), none is an input (a source ELAN file, the corpus file), and a failure leaves
nothing behind.
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


def export(segments, rows, task, fmt: str, out: Path, inputs=()) -> list[Path]:
    """Write the predictions ``rows`` (one per segment) in ``fmt`` under the folder ``out``."""
    return write_plan(plan_export(segments, rows, task, fmt, out, inputs))


def plan_export(segments, rows, task, fmt: str, out: Path, inputs=()) -> list[tuple[Path, str]]:
    """Every file the export would write, with its text, checked: nothing is written here. The
    first path of each session is the one to open (NOVA's data file follows its annotation)."""
    if fmt not in FORMATS:
        raise EmoregError(f"--export: expected one of {', '.join(FORMATS)}, found {fmt!r}")
    out = Path(out)
    if fmt == "csv":
        plan = [(out / "predictions.csv", _csv(segments, rows, task))]
    else:
        sessions = _by_session(segments, rows)
        stems = _unique_stems(sessions, fmt)
        plan = []
        for session, pairs in sessions.items():
            pairs = _timed(pairs, fmt)
            plan += _elan(session, pairs, task, out, stems[session]) if fmt == "elan" else \
                _nova(pairs, task, out, stems[session])
    protected = {Path(p).resolve() for p in inputs}
    protected |= {Path(s.meta["elan"]).resolve() for s in segments if isinstance(s.meta.get("elan"), str)}
    for path, _ in plan:
        if path.resolve() in protected:
            raise EmoregError(f"--export {fmt}: {path} is an input of this run (or its predictions file); it is never overwritten: give "
                              "--export-dir a folder of its own")
    paths = [path.resolve() for path, _ in plan]
    if len(set(paths)) != len(paths):  # unique stems make this impossible; a guard, not a path taken
        raise EmoregError(f"--export {fmt}: two outputs would share a path; nothing was written")
    return plan


def write_plan(plan: list[tuple[Path, str]]) -> list[Path]:
    for path, text in plan:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
    return [path for path, _ in plan if not str(path).endswith("~")]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "_"


def _unique_stems(sessions: dict, fmt: str) -> dict[str, str]:
    """A file stem per session: ELAN's source file name, NOVA's session id made file-safe; where
    two sessions would share one (``a/b`` and ``a_b``; two ``labels.eaf`` in two folders), each of
    them gets a short hash of its session id."""
    import hashlib

    def plain(session: str) -> str:
        if fmt == "elan":
            source = {s.meta.get("elan") for s, _ in sessions[session]}
            return Path(source.pop()).stem if len(source) == 1 and None not in source else _safe(session)
        return _safe(session)

    stems = {session: plain(session) for session in sessions}
    taken: dict[str, int] = {}
    for stem in stems.values():
        taken[stem.lower()] = taken.get(stem.lower(), 0) + 1  # case-insensitive file systems too
    return {session: stem if taken[stem.lower()] == 1 else f"{stem}-{hashlib.sha1(session.encode()).hexdigest()[:8]}"
            for session, stem in stems.items()}


def _csv(segments, rows, task) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["session_id", "segment_id", "subject_id", "start_s", "end_s", "predicted",
                     *[f"p_{label}" for label in task.labels]])
    for s, r in zip(segments, rows):
        writer.writerow([s.session_id, s.segment_id, s.subject_id, s.start_s, s.end_s, r["predicted"],
                         *[f"{r['proba'][label]:.6f}" for label in task.labels]])
    return buffer.getvalue()


def _elan(session: str, pairs, task, out: Path, stem: str) -> list[tuple[Path, str]]:
    sources = {s.meta.get("elan") for s, _ in pairs}
    if None in sources or len(sources) != 1:
        raise EmoregError(f"--export elan: session {session!r} was not imported from one ELAN file (`emoreg import` "
                          "with labels or speech from an .eaf records it); use --export nova or csv")
    source = Path(sources.pop())
    if source.suffix.lower() != ".eaf" or source.is_symlink() or not source.is_file():
        raise EmoregError(f"--export elan: session {session!r} names {source} as its ELAN file (meta.elan), which is not "
                          "a regular .eaf file; only the ELAN files `emoreg import` read are exported onto. Import the "
                          "session again from its .eaf, or use --export nova or csv")
    try:
        tree = ET.parse(source)
    except (OSError, ET.ParseError) as exc:
        raise EmoregError(f"--export elan: cannot read {source}, the session's ELAN file: {exc}") from None
    root = tree.getroot()
    if root.tag != "ANNOTATION_DOCUMENT":
        raise EmoregError(f"--export elan: {source} (meta.elan of session {session!r}) is XML but not an ELAN file "
                          f"(its root is <{root.tag}>, not <ANNOTATION_DOCUMENT>); import the session again from its "
                          ".eaf, or use --export nova or csv")
    name = tier_name(task.name)
    order = root.find("TIME_ORDER")
    if order is None:
        order = ET.Element("TIME_ORDER")
        root.insert(1 if root.find("HEADER") is not None else 0, order)
    old_slots = set()
    for tier in list(root.iter("TIER")):
        if tier.get("TIER_ID") in (name, name + ":p"):  # an earlier export's: replaced, with its time slots
            old_slots |= _slot_refs(tier)
            root.remove(tier)
    still_used = _slot_refs(root)
    for slot in list(order):
        if slot.get("TIME_SLOT_ID") in old_slots - still_used:
            order.remove(slot)
    used = {slot.get("TIME_SLOT_ID") for slot in root.iter("TIME_SLOT")}
    ids = {a.get("ANNOTATION_ID") for a in root.iter("ALIGNABLE_ANNOTATION")}
    ids |= {a.get("ANNOTATION_ID") for a in root.iter("REF_ANNOTATION")}
    _vocabulary(root, name, task)

    def new_id(prefix: str, taken: set[str]) -> str:
        n = len(taken)
        while f"{prefix}{n}" in taken:
            n += 1
        taken.add(f"{prefix}{n}")
        return f"{prefix}{n}"

    labels = ET.Element("TIER", {"LINGUISTIC_TYPE_REF": "emoreg-labels", "TIER_ID": name})
    confidence = ET.Element("TIER", {"LINGUISTIC_TYPE_REF": "emoreg-lt", "TIER_ID": name + ":p"})
    new_slots = []
    for segment, row in pairs:
        slots = []
        for t in (segment.start_s, segment.end_s):
            slot = ET.Element("TIME_SLOT", {"TIME_SLOT_ID": new_id("emoreg-ts", used), "TIME_VALUE": str(round(t * 1000))})
            new_slots.append(slot)
            slots.append(slot.get("TIME_SLOT_ID"))
        for tier, value in ((labels, row["predicted"]), (confidence, f"{row['proba'][row['predicted']]:.3f}")):
            ann = ET.SubElement(ET.SubElement(tier, "ANNOTATION"), "ALIGNABLE_ANNOTATION", {
                "ANNOTATION_ID": new_id("emoreg-a", ids), "TIME_SLOT_REF1": slots[0], "TIME_SLOT_REF2": slots[1]})
            ET.SubElement(ann, "ANNOTATION_VALUE").text = value
    _merge_in_time_order(order, new_slots)
    _insert_in_order(root, labels)  # after the file's last tier, as ELAN writes them
    _insert_in_order(root, confidence)
    ET.indent(tree)
    return [(out / f"{stem}.emoreg.eaf", ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n")]


# the order of ANNOTATION_DOCUMENT's children in the EAF 3.0 schema
EAF_ORDER = ("HEADER", "TIME_ORDER", "TIER", "LINGUISTIC_TYPE", "LOCALE", "LANGUAGE", "CONSTRAINT",
             "CONTROLLED_VOCABULARY", "LEXICON_REF", "REF_LINK_SET", "EXTERNAL_REF")


def _insert_in_order(root, element) -> None:
    """Put ``element`` after the last child that the schema puts before it or beside it."""
    rank = EAF_ORDER.index(element.tag)
    children = list(root)
    at = max((i for i, c in enumerate(children) if c.tag in EAF_ORDER and EAF_ORDER.index(c.tag) <= rank), default=-1)
    root.insert(at + 1, element)


def _vocabulary(root, name: str, task) -> None:
    """The linguistic types of the exported tiers, and a controlled vocabulary of the task's labels
    on the label tier's type, so that annotators correct a label by picking one in ELAN; an earlier
    export's vocabulary is replaced (the task's labels may have changed)."""
    cv_id = name
    for cv in root.findall(f"CONTROLLED_VOCABULARY[@CV_ID='{cv_id}']"):
        root.remove(cv)
    for type_id in ("emoreg-labels", "emoreg-lt"):
        for old in root.findall(f"LINGUISTIC_TYPE[@LINGUISTIC_TYPE_ID='{type_id}']"):
            root.remove(old)
        attributes = {"GRAPHIC_REFERENCES": "false", "LINGUISTIC_TYPE_ID": type_id, "TIME_ALIGNABLE": "true"}
        if type_id == "emoreg-labels":
            attributes = {"CONTROLLED_VOCABULARY_REF": cv_id, **attributes}
        _insert_in_order(root, ET.Element("LINGUISTIC_TYPE", attributes))
    if root.find("LANGUAGE[@LANG_ID='und']") is None:  # the vocabulary's entries name their language
        _insert_in_order(root, ET.Element("LANGUAGE", {"LANG_DEF": "http://cdb.iso.org/lg/CDB-00130975-001",
                                                       "LANG_ID": "und", "LANG_LABEL": "undetermined (und)"}))
    cv = ET.Element("CONTROLLED_VOCABULARY", {"CV_ID": cv_id})
    ET.SubElement(cv, "DESCRIPTION", {"LANG_REF": "und"}).text = f"the labels of task {task.name} (emoreg)"
    definitions = getattr(task, "definitions", {}) or {}
    for i, label in enumerate(task.labels):
        entry = ET.SubElement(cv, "CV_ENTRY_ML", {"CVE_ID": f"emoreg-cve{i}"})
        ET.SubElement(entry, "CVE_VALUE", {"DESCRIPTION": str(definitions.get(label, "")), "LANG_REF": "und"}).text = label
    _insert_in_order(root, cv)


def _slot_refs(element) -> set[str]:
    """The time slots the alignable annotations under ``element`` refer to."""
    return {a.get(k) for a in element.iter("ALIGNABLE_ANNOTATION") for k in ("TIME_SLOT_REF1", "TIME_SLOT_REF2")}


def _merge_in_time_order(order, new_slots) -> None:
    """Put ``new_slots`` (each with a time) into ``order`` in time order, the existing slots kept
    in their own order (an unaligned slot, without a time, stays right after the slot before it)."""
    pending = sorted(new_slots, key=lambda slot: int(slot.get("TIME_VALUE")))
    merged = []
    for slot in list(order):
        value = slot.get("TIME_VALUE")
        if value is not None and value.lstrip("-").isdigit():
            while pending and int(pending[0].get("TIME_VALUE")) < int(value):
                merged.append(pending.pop(0))
        merged.append(slot)
    merged += pending
    for slot in list(order):
        order.remove(slot)
    order.extend(merged)


def _nova(pairs, task, out: Path, stem: str) -> list[tuple[Path, str]]:
    root = ET.Element("annotation", {"ssi-v": "3"})
    ET.SubElement(root, "info", {"ftype": "ASCII", "size": str(len(pairs))})
    ET.SubElement(root, "meta", {"annotator": "emoreg", "role": "prediction"})
    scheme = ET.SubElement(root, "scheme", {"name": task.name, "type": "DISCRETE"})
    for i, label in enumerate(task.labels):
        ET.SubElement(scheme, "item", {"name": label, "id": str(i)})
    ET.indent(root)
    path = out / f"{stem}.emoreg.annotation"
    lines = [f"{s.start_s:.3f};{s.end_s:.3f};{task.labels.index(r['predicted'])};{r['proba'][r['predicted']]:.6f}"
             for s, r in pairs]
    return [(path, ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"),
            (Path(str(path) + "~"), "\n".join(lines) + "\n")]
