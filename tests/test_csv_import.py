from pathlib import Path

import pytest

from emoreg.corpora import load_corpus
from emoreg.errors import ValidationError

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "csv" / "interviews.yaml"


def test_example_mapping_builds_segments_with_history():
    corpus = load_corpus(str(EXAMPLE), "deep-shame")
    assert [s.segment_id for s in corpus.segments] == ["A-1-02", "A-1-04", "B-1-02", "B-1-04"]
    seg = corpus.segments[1]
    assert seg.label == "Attack Self" and seg.subject_id == "A" and seg.session_id == "A-1"
    assert [t.text for t in seg.transcript][-2:] == ["That is a strange answer.", "Sorry, that was stupid of me."]
    assert len(seg.transcript) == 4
    assert dict(seg.person) == {"age": 22.0, "shame_proneness": 4.1}
    assert dict(seg.nonverbal.features) == {"gaze_away_share": 0.40}
    assert seg.introspection == "I felt so dumb."
    assert corpus.notes == ["4 row(s) without a label were read as transcript turns, not segments"]


def test_bad_rows_are_all_reported_with_csv_lines(tmp_path):
    (tmp_path / "c.csv").write_text(
        "who,t0,t1,lab,f\n"
        "A,1,2,Rest,0.5\n"
        ",1,2,Rest,0.1\n"
        "B,x,2,Rest,0.1\n"
        "B,3,2,Anger,high\n")
    (tmp_path / "m.yaml").write_text(
        "csv: c.csv\ncolumns: {subject_id: who, start_s: t0, end_s: t1, label: lab}\nfeatures: [f]\n")
    with pytest.raises(ValidationError) as info:
        load_corpus(str(tmp_path / "m.yaml"), "deep-shame")
    found = [(p.where.rsplit(":", 1)[1], p.field, p.message) for p in info.value.problems]
    assert found == [
        ("3", "who", "empty subject id"),
        ("4", "t0", "expected a number of seconds, found 'x'"),
        ("5", "t1", "ends before it starts"),
        ("5", "lab", "'Anger' is not a label of task 'deep-shame' (Withdrawal, Attack Self, "
                     "Attack Other, Avoidance, Depreciation, Stabilize Self, Rest)"),
        ("5", "f", "expected a number, found 'high'"),
    ]


def test_mapping_errors_and_missing_columns(tmp_path):
    (tmp_path / "c.csv").write_text("who,lab\nA,Rest\n")
    (tmp_path / "m.yaml").write_text("csv: c.csv\ncolumns: {subject_id: who, label: label, colour: x}\nextra: 1\n")
    with pytest.raises(ValidationError) as info:
        load_corpus(str(tmp_path / "m.yaml"), "deep-shame")
    assert [p.field for p in info.value.problems] == ["extra", "columns.colour"]
    (tmp_path / "m.yaml").write_text("csv: c.csv\ncolumns: {subject_id: who, label: label}\n")
    with pytest.raises(Exception, match=r"column\(s\) label named in m.yaml are not in the file \(it has: who, lab\)"):
        load_corpus(str(tmp_path / "m.yaml"), "deep-shame")
