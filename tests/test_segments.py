import json

import pytest

from emoreg.corpora.deep import example_path, load_example
from emoreg.errors import ValidationError
from emoreg.segment_files import read_segments, write_segments
from emoreg.segments import Event, Nonverbal, Segment, Turn
from emoreg.tasks import DEEP_SHAME

GOOD = {"segment_id": "s1", "subject_id": "P1", "session_id": "P1-a", "start_s": 1.0,
        "end_s": 2.5, "label": "Rest"}


def write_lines(tmp_path, lines):
    path = tmp_path / "segments.jsonl"
    path.write_text("".join((l if isinstance(l, str) else json.dumps(l)) + "\n" for l in lines))
    return path


def problems_of(path, task=DEEP_SHAME):
    with pytest.raises(ValidationError) as info:
        read_segments(path, task)
    return [(p.where.rsplit(":", 1)[1], p.field, p.message) for p in info.value.problems]


def test_example_file_round_trips(tmp_path):
    segments = read_segments(example_path(), DEEP_SHAME)
    assert {s.label for s in segments} == set(DEEP_SHAME.labels)
    assert all(all(s.has(src) for src in ("context", "transcript", "nonverbal", "person", "introspection"))
               for s in segments)
    out = write_segments(tmp_path / "copy.jsonl", segments)
    assert read_segments(out, DEEP_SHAME) == segments


def test_example_is_marked_invented():
    corpus = load_example()
    assert any("invented for illustration" in n for n in corpus.notes)
    assert all("invented" in s.meta["note"] for s in corpus.segments)


def test_broken_line_unknown_label_and_missing_subject_all_reported(tmp_path):
    path = write_lines(tmp_path, [
        GOOD,
        '{"segment_id": "s2", "subject_id": ',
        GOOD | {"segment_id": "s3", "label": "Anger"},
        {k: v for k, v in GOOD.items() if k != "subject_id"} | {"segment_id": "s4"},
    ])
    found = problems_of(path)
    assert [(line, field) for line, field, _ in found] == [
        ("2", None), ("3", "label"), ("4", "subject_id")]
    assert found[0][2].startswith("malformed JSON")
    assert found[1][2] == ("'Anger' is not a label of task 'deep-shame' (Withdrawal, Attack Self, "
                           "Attack Other, Avoidance, Depreciation, Stabilize Self, Rest)")
    assert found[2][2] == "missing; expected a non-empty string"


def test_every_kind_of_problem_is_named(tmp_path):
    path = write_lines(tmp_path, [
        GOOD | {"subject_id": "  "},
        GOOD | {"segment_id": "s2", "start_s": 5, "end_s": 4},
        GOOD | {"segment_id": "s3", "subject_id": 7},
        GOOD | {"segment_id": "s1"},
        GOOD | {"segment_id": "s5", "lable": "Rest"},
        GOOD | {"segment_id": "s6", "transcript": [{"speaker": "A"}]},
        GOOD | {"segment_id": "s7", "nonverbal": {"events": [{"behaviour": "smile", "start_s": 3, "end_s": 1}],
                                                  "features": {"au12": "high"}}},
        GOOD | {"segment_id": "s8", "person": {"age": None}},
        GOOD | {"segment_id": "s9", "label": "rest"},
        [1, 2],
    ])
    found = problems_of(path)
    assert found == [
        ("1", "subject_id", "is empty; expected a non-empty string"),
        ("2", "end_s", "ends before it starts (start_s=5, end_s=4)"),
        ("3", "subject_id", "expected a string, found an integer 7"),
        ("4", "segment_id", "duplicate id 's1' (first used on line 1)"),
        ("5", "lable", "unknown field (did you mean 'label'?)"),
        ("6", "transcript[0].text", "missing; expected a non-empty string"),
        ("7", "nonverbal.events[0].end_s", "ends before it starts (start_s=3, end_s=1)"),
        ("7", "nonverbal.features.au12", 'expected a number, found a string "high"'),
        ("8", "person.age", "expected a string, number or boolean (leave the factor out when "
                            "unknown), found null"),
        ("9", "label", "'rest' is not a label of task 'deep-shame' (Withdrawal, Attack Self, "
                       "Attack Other, Avoidance, Depreciation, Stabilize Self, Rest); did you mean 'Rest'?"),
        ("10", None, "expected a JSON object, found a list"),
    ]


def test_blank_lines_are_allowed_and_labels_optional(tmp_path):
    unlabelled = {k: v for k, v in GOOD.items() if k != "label"}
    path = write_lines(tmp_path, [unlabelled, "", GOOD | {"segment_id": "s2"}])
    segments = read_segments(path, DEEP_SHAME)
    assert [s.label for s in segments] == [None, "Rest"]


def test_empty_file_is_an_error(tmp_path):
    path = write_lines(tmp_path, [])
    with pytest.raises(ValidationError) as info:
        read_segments(path, DEEP_SHAME)
    assert [(p.field, p.message) for p in info.value.problems] == [(None, "holds no segments")]


def test_segment_to_dict_leaves_out_absent_fields():
    seg = Segment("a", "b", "c", transcript=(Turn("x", "hi", 1.0),),
                  nonverbal=Nonverbal((Event("smile", 1.0, 1.5, 0.3),), {"f": 1.0}))
    assert seg.to_dict() == {
        "segment_id": "a", "subject_id": "b", "session_id": "c",
        "transcript": [{"speaker": "x", "text": "hi", "start_s": 1.0}],
        "nonverbal": {"events": [{"behaviour": "smile", "start_s": 1.0, "end_s": 1.5, "intensity": 0.3}],
                      "features": {"f": 1.0}},
    }
    assert not seg.has("person") and seg.has("transcript") and seg.has("nonverbal")


def test_a_repeated_key_and_a_nul_character_are_named_not_kept(tmp_path):
    """json keeps the last of two equal keys without a word, and a NUL cuts the text in many tools:
    both are problems of the line that holds them."""
    import pytest

    from emoreg.errors import ValidationError
    from emoreg.segment_files import read_segments

    good = ('{"segment_id": "a", "subject_id": "s", "session_id": "s1", "start_s": 0, "end_s": 1, '
            '"label": "Rest"')
    path = tmp_path / "s.jsonl"
    path.write_text(good + ', "label": "Withdrawal"}\n' + good.replace('"a"', '"b"') + ', "context": "x\\u0000y"}\n')
    with pytest.raises(ValidationError) as info:
        read_segments(path)
    text = str(info.value)
    assert "s.jsonl:1: the key 'label' appears twice in one object" in text
    assert "s.jsonl:2: context: holds a NUL character (at character 1)" in text
