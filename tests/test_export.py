"""Predictions back into ELAN and NOVA, and read back by `emoreg import` as labels: a round trip."""

import json
from pathlib import Path

import pytest
import yaml

from emoreg.cli import main

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "import"


def _import(config: dict, folder: Path, name: str) -> list[dict]:
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(config))
    assert main(["import", "--config", str(folder / f"{name}.yaml"), "--out", str(folder / f"{name}.jsonl")]) == 0
    return [json.loads(line) for line in (folder / f"{name}.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("fmt", ["elan", "nova"])
def test_export_then_import_gives_the_predicted_labels_back(tmp_path, fmt):
    config = yaml.safe_load((EXAMPLE / "import.yaml").read_text())
    for session in config["sessions"]:  # absolute paths: the configs below live elsewhere
        for part in ("face", "speech", "labels"):
            session[part] = {k: str(EXAMPLE / v) if k != "tier" else v for k, v in session[part].items()}
    for key in ("person", "introspection"):
        config[key] = str(EXAMPLE / config[key])
    rows = _import(config, tmp_path, "all")
    p01, p02 = ([r for r in rows if r["subject_id"] == s] for s in ("P01", "P02"))
    for name, part in (("p01", p01), ("p02", p02)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    (tmp_path / "train.yaml").write_text(yaml.safe_dump({
        "corpus": str(tmp_path / "p01.jsonl"), "task": "deep-shame", "model": "tfidf",
        "params": {"text": "prompt", "min_df": 1}, "split": {"kind": "loso"}}))
    assert main(["train", str(tmp_path / "train.yaml"), "--out", str(tmp_path / "model")]) == 0
    assert main(["predict", str(tmp_path / "model"), "--corpus", str(tmp_path / "p02.jsonl"),
                 "--out", str(tmp_path / "pred.jsonl"), "--export", fmt, "--export-dir", str(tmp_path / "out")]) == 0
    predicted = [json.loads(line) for line in (tmp_path / "pred.jsonl").read_text().splitlines()]
    if fmt == "elan":
        exported = tmp_path / "out" / "P02_labels.emoreg.eaf"
        text = exported.read_text()
        assert 'TIER_ID="emoreg:deep-shame"' in text and 'TIER_ID="emoreg:deep-shame:p"' in text
        assert 'TIER_ID="strategy"' in text  # the annotators' own tiers stay
        labels = {"elan": str(exported), "tier": "emoreg:deep-shame"}
    else:
        exported = tmp_path / "out" / "P02-interview.emoreg.annotation"
        labels = {"nova": str(exported)}
    back = dict(config, sessions=[dict(config["sessions"][1], labels=labels)])
    again = _import(back, tmp_path, "again")
    assert [r["label"] for r in again] == [r["predicted"] for r in predicted]
    assert [(r["start_s"], r["end_s"]) for r in again] == [(r["start_s"], r["end_s"]) for r in p02]


def test_export_elan_needs_segments_imported_from_elan_and_csv_takes_any(tmp_path, capsys):
    assert main(["train", "configs/baselines/deep-example-tfidf.yaml", "--out", str(tmp_path / "m")]) == 0
    args = ["predict", str(tmp_path / "m"), "--corpus", "deep-example", "--out", str(tmp_path / "p.jsonl")]
    assert main(args + ["--export", "elan"]) == 2
    assert "was not imported from one ELAN file" in capsys.readouterr().err
    assert main(args + ["--export", "csv"]) == 0
    table = (tmp_path / "p-csv" / "predictions.csv").read_text().splitlines()
    assert table[0].startswith("session_id,segment_id,subject_id,start_s,end_s,predicted,p_Withdrawal")
    assert len(table) == 1 + len((tmp_path / "p.jsonl").read_text().splitlines())


ELAN_WITH_CV = """<?xml version="1.0" encoding="UTF-8"?>
<ANNOTATION_DOCUMENT AUTHOR="" DATE="2026-12-01T10:00:00+01:00" FORMAT="3.0" VERSION="3.0"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xsi:noNamespaceSchemaLocation="http://www.mpi.nl/tools/elan/EAFv3.0.xsd">
    <HEADER MEDIA_FILE="" TIME_UNITS="milliseconds"/>
    <TIME_ORDER>
        <TIME_SLOT TIME_SLOT_ID="ts1" TIME_VALUE="0"/>
        <TIME_SLOT TIME_SLOT_ID="ts2" TIME_VALUE="2000"/>
        <TIME_SLOT TIME_SLOT_ID="ts3" TIME_VALUE="4000"/>
    </TIME_ORDER>
    <TIER LINGUISTIC_TYPE_REF="default-lt" TIER_ID="strategy">
        <ANNOTATION><ALIGNABLE_ANNOTATION ANNOTATION_ID="a1" TIME_SLOT_REF1="ts1" TIME_SLOT_REF2="ts2">
            <ANNOTATION_VALUE>Rest</ANNOTATION_VALUE></ALIGNABLE_ANNOTATION></ANNOTATION>
        <ANNOTATION><ALIGNABLE_ANNOTATION ANNOTATION_ID="a2" TIME_SLOT_REF1="ts2" TIME_SLOT_REF2="ts3">
            <ANNOTATION_VALUE>Withdrawal</ANNOTATION_VALUE></ALIGNABLE_ANNOTATION></ANNOTATION>
    </TIER>
    <LINGUISTIC_TYPE GRAPHIC_REFERENCES="false" LINGUISTIC_TYPE_ID="default-lt" TIME_ALIGNABLE="true"/>
    <CONSTRAINT DESCRIPTION="Time subdivision of parent annotation's time interval" STEREOTYPE="Time_Subdivision"/>
    <CONTROLLED_VOCABULARY CV_ID="cv"><DESCRIPTION LANG_REF="und"/></CONTROLLED_VOCABULARY>
</ANNOTATION_DOCUMENT>
"""


def _segments_of(sessions: dict[str, tuple[str | None, list[tuple[float, float]]]]):
    from emoreg.segments import Segment

    out = []
    for session, (elan, times) in sessions.items():
        for i, (start, end) in enumerate(times):
            out.append(Segment(segment_id=f"{session}-{i}", subject_id="p", session_id=session, start_s=start,
                               end_s=end, label="Rest", meta={"elan": elan} if elan else {}))
    return out


def _rows(segments):
    return [{"predicted": "Rest", "proba": {"Withdrawal": 0.2, "Rest": 0.8}} for _ in segments]


class _Task:
    name = "t"
    labels = ("Withdrawal", "Rest")


def test_sessions_whose_names_collide_get_a_file_each_and_no_row_is_lost(tmp_path):
    from emoreg.exporters import export

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "labels.eaf").write_text(ELAN_WITH_CV)
    segments = _segments_of({"s1": (str(tmp_path / "a" / "labels.eaf"), [(0.5, 1.0)]),
                             "s2": (str(tmp_path / "b" / "labels.eaf"), [(1.0, 1.5), (2.5, 3.0)])})
    written = export(segments, _rows(segments), _Task, "elan", tmp_path / "out")
    assert len(set(written)) == 2 and all(p.is_file() for p in written)
    assert sorted(p.read_text().count("<ANNOTATION_VALUE>Rest</ANNOTATION_VALUE>") for p in written) == [2, 3]
    nova = _segments_of({"a/b": (None, [(0, 1), (1, 2)]), "a_b": (None, [(0, 1), (1, 2)])})
    written = export(nova, _rows(nova), _Task, "nova", tmp_path / "nova")
    assert len(set(written)) == 2
    assert sum(len(Path(str(p) + "~").read_text().splitlines()) for p in written) == 4  # all four rows


def test_an_elan_export_keeps_the_schema_order_time_order_and_leaves_no_orphan_slots(tmp_path):
    import xml.etree.ElementTree as ET

    from emoreg.exporters import export

    source = tmp_path / "src" / "labels.eaf"
    source.parent.mkdir()
    source.write_text(ELAN_WITH_CV)
    before = source.read_bytes()
    segments = _segments_of({"s": (str(source), [(0.5, 1.0), (2.5, 3.5)])})
    first = export(segments, _rows(segments), _Task, "elan", tmp_path / "out")[0]
    assert source.read_bytes() == before  # the annotators' file is never written
    root = ET.parse(first).getroot()
    tags = [c.tag for c in root]
    assert tags == ["HEADER", "TIME_ORDER", "TIER", "TIER", "TIER", "LINGUISTIC_TYPE", "LINGUISTIC_TYPE",
                    "LINGUISTIC_TYPE", "LANGUAGE", "CONSTRAINT", "CONTROLLED_VOCABULARY",
                    "CONTROLLED_VOCABULARY"]  # the EAF 3.0 schema's order
    # the label tier's type offers the task's labels as a controlled vocabulary: annotators pick
    tier = root.find("TIER[@TIER_ID='emoreg:t']")
    kind = root.find(f"LINGUISTIC_TYPE[@LINGUISTIC_TYPE_ID='{tier.get('LINGUISTIC_TYPE_REF')}']")
    cv = root.find(f"CONTROLLED_VOCABULARY[@CV_ID='{kind.get('CONTROLLED_VOCABULARY_REF')}']")
    assert [e.text for e in cv.iter("CVE_VALUE")] == list(_Task.labels)
    assert {e.get("LANG_REF") for e in cv.iter("CVE_VALUE")} == {"und"} and root.find("LANGUAGE[@LANG_ID='und']") is not None
    confidence = root.find("TIER[@TIER_ID='emoreg:t:p']")
    assert root.find(f"LINGUISTIC_TYPE[@LINGUISTIC_TYPE_ID='{confidence.get('LINGUISTIC_TYPE_REF')}']").get(
        "CONTROLLED_VOCABULARY_REF") is None  # numbers, not labels
    times = [int(s.get("TIME_VALUE")) for s in root.iter("TIME_SLOT")]
    assert times == sorted(times) and len(times) == 3 + 4
    again = _segments_of({"s": (str(first), [(1.0, 2.0)])})  # export onto the exported file: tiers replaced
    second = export(again, _rows(again), _Task, "elan", tmp_path / "out2")[0]
    root = ET.parse(second).getroot()
    slots = {s.get("TIME_SLOT_ID") for s in root.iter("TIME_SLOT")}
    used = {a.get(k) for a in root.iter("ALIGNABLE_ANNOTATION") for k in ("TIME_SLOT_REF1", "TIME_SLOT_REF2")}
    assert slots == used and len(slots) == 3 + 2  # no orphan slot of the first export
    assert [t.get("TIER_ID") for t in root.iter("TIER")] == ["strategy", "emoreg:t", "emoreg:t:p"]
    assert [c.tag for c in root].count("CONTROLLED_VOCABULARY") == 2  # its own replaced, the annotators' kept
    assert [c.tag for c in root].count("LINGUISTIC_TYPE") == 3 and [c.tag for c in root].count("LANGUAGE") == 1


def test_an_export_onto_an_input_or_a_failed_one_writes_nothing(tmp_path, capsys):
    assert main(["train", "configs/baselines/deep-example-tfidf.yaml", "--out", str(tmp_path / "m")]) == 0
    source = tmp_path / "data" / "x.emoreg.eaf"  # named as an export names its copies
    source.parent.mkdir()
    source.write_text(ELAN_WITH_CV)
    corpus = tmp_path / "data" / "segments.jsonl"
    from emoreg.segment_files import write_segments

    segments = _segments_of({"x": (str(source), [(0.5, 1.0)])})
    write_segments(corpus, segments)
    before = source.read_bytes()
    args = ["predict", str(tmp_path / "m"), "--corpus", str(corpus), "--out", str(tmp_path / "p.jsonl")]
    assert main(args + ["--export", "elan", "--export-dir", str(source.parent)]) == 0  # beside its source
    assert source.read_bytes() == before and (source.parent / "x.emoreg.emoreg.eaf").is_file()
    clash = ["predict", str(tmp_path / "m"), "--corpus", str(corpus), "--out", str(tmp_path / "data" / "predictions.csv")]
    assert main(clash + ["--export", "csv", "--export-dir", str(tmp_path / "data")]) == 2  # the same path twice
    assert "is an input of this run (or its predictions file); it is never overwritten" in capsys.readouterr().err
    assert not (tmp_path / "data" / "predictions.csv").exists()
    untimed = tmp_path / "data" / "untimed.jsonl"
    untimed.write_text(corpus.read_text().replace('"start_s": 0.5', '"start_s": null'))
    args = ["predict", str(tmp_path / "m"), "--corpus", str(untimed), "--out", str(tmp_path / "q.jsonl")]
    assert main(args + ["--export", "nova"]) == 2
    assert not (tmp_path / "q.jsonl").exists() and not (tmp_path / "q-nova").exists()


def test_an_elan_export_reads_only_an_elan_file_as_its_source(tmp_path):
    """meta.elan comes from a segments file, which anyone can write: a path to any other file (or a
    link to one) is refused, never read and copied into the export."""
    from emoreg.errors import EmoregError
    from emoreg.exporters import export

    other = tmp_path / "other.xml"
    other.write_text("<config><password>hunter2</password></config>")
    link = tmp_path / "link.eaf"
    link.symlink_to(tmp_path / "other.xml")
    renamed = tmp_path / "renamed.eaf"
    renamed.write_text(other.read_text())
    for source, words in ((other, "not a regular .eaf file"), (link, "not a regular .eaf file"),
                          (renamed, "is XML but not an ELAN file (its root is <config>")):
        segments = _segments_of({"s": (str(source), [(0.5, 1.0)])})
        with pytest.raises(EmoregError, match=words.replace("(", r"\(")):
            export(segments, _rows(segments), _Task, "elan", tmp_path / "out")
        assert not (tmp_path / "out").exists()


def test_an_elan_export_reads_back_in_the_maintained_eaf_library(tmp_path):
    """pympi-ling (the EAF library researchers script ELAN with) reads the exported file: the
    annotators' tier untouched, the predicted labels at their times, the task's labels offered as
    the label tier's controlled vocabulary."""
    import pympi

    from emoreg.exporters import export

    source = tmp_path / "labels.eaf"
    source.write_text(ELAN_WITH_CV)
    segments = _segments_of({"s": (str(source), [(0.5, 1.0), (2.5, 3.5)])})
    eaf = pympi.Elan.Eaf(str(export(segments, _rows(segments), _Task, "elan", tmp_path / "out")[0]))
    assert list(eaf.get_tier_names()) == ["strategy", "emoreg:t", "emoreg:t:p"]
    assert eaf.get_annotation_data_for_tier("strategy") == [(0, 2000, "Rest"), (2000, 4000, "Withdrawal")]
    assert eaf.get_annotation_data_for_tier("emoreg:t") == [(500, 1000, "Rest"), (2500, 3500, "Rest")]
    assert eaf.get_annotation_data_for_tier("emoreg:t:p") == [(500, 1000, "0.800"), (2500, 3500, "0.800")]
    labels_type = eaf.tiers["emoreg:t"][2]["LINGUISTIC_TYPE_REF"]
    cv = eaf.linguistic_types[labels_type]["CONTROLLED_VOCABULARY_REF"]
    assert [values[0][0] for values, _ in eaf.get_cv_entries(cv).values()] == list(_Task.labels)


def test_an_export_onto_a_file_elan_wrote_keeps_it_whole_and_reads_back(tmp_path):
    """A file ELAN itself wrote (pyelan's test data, ELAN 2.7 format: four constraints, a header
    property, a locale on its tier): the export keeps every annotators' tier and annotation, puts
    each new element where the schema orders it, keeps time slots in time order, and pympi-ling
    reads the predicted tier back at the segments' times."""
    import shutil
    import xml.etree.ElementTree as ET
    from importlib import metadata

    import pympi

    from emoreg.exporters import EAF_ORDER, export
    from emoreg.importers.speech import read_eaf

    written_by_elan = Path(metadata.distribution("pyelan").locate_file("pyelan/tests/Letters.eaf"))
    source = tmp_path / "letters.eaf"
    shutil.copy(written_by_elan, source)
    before = source.read_bytes()
    original = pympi.Elan.Eaf(str(source))
    turns = read_eaf(source)["JK"][:3]
    segments = _segments_of({"s": (str(source), [(t.start_s, t.end_s) for t in turns])})
    out = export(segments, _rows(segments), _Task, "elan", tmp_path / "out")[0]
    assert source.read_bytes() == before
    root = ET.parse(out).getroot()
    ranks = [EAF_ORDER.index(c.tag) for c in root]
    assert ranks == sorted(ranks)  # every child where the schema orders it
    times = [int(s.get("TIME_VALUE")) for s in root.iter("TIME_SLOT")]
    assert times == sorted(times)
    again = pympi.Elan.Eaf(str(out))
    for tier in original.get_tier_names():  # the annotators' work, untouched
        assert again.get_annotation_data_for_tier(tier) == original.get_annotation_data_for_tier(tier)
    assert again.get_annotation_data_for_tier("emoreg:t") == [
        (round(t.start_s * 1000), round(t.end_s * 1000), "Rest") for t in turns]
