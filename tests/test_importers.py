"""Importers, on small files written by hand in each tool's format, with expected values
computed by hand (see the comments)."""

import shutil
from pathlib import Path

import pytest

from emoreg.cli import main
from emoreg.errors import EmoregError, ValidationError
from emoreg.importers.face import FaceTrack, load_rules, read_openface, read_pyfeat
from emoreg.importers.join import import_segments
from emoreg.importers.speech import read_eaf, read_nova, read_subtitles, read_whisper
from emoreg.segment_files import read_segments

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "import"


@pytest.fixture
def example(tmp_path):
    folder = tmp_path / "import"
    shutil.copytree(EXAMPLE, folder)
    return folder


def test_openface_aggregates_by_hand():
    frames = read_openface(EXAMPLE / "P01_openface.csv")
    assert len(frames) == 40 and "timestamp" in frames.columns  # headers had leading spaces
    track = FaceTrack.build(frames, load_rules())
    assert track.skipped == 3  # frames 10, 11 (confidence 0.5) and 30 (success 0)
    first = track.nonverbal(0.0, 2.0)
    # 18 kept frames in [0, 2): AU12_r is 2.0 in the 9 frames t=0.0..0.8, else 0
    assert first.features["AU12_mean"] == pytest.approx(1.0)
    assert first.features["AU12_max"] == 2.0
    assert first.features["AU12_share"] == pytest.approx(0.5)
    assert first.features["gaze_away_share"] == pytest.approx(1 / 18)  # only t=1.9 looks away
    assert first.features["head_pitch_mean"] == pytest.approx(0.1)
    # smile: frames t=0.0..0.8 (frame 10 at t=0.9 was skipped), 0.9 s >= 0.5 s
    assert [(e.behaviour, e.start_s, e.end_s, e.intensity) for e in first.events] == [
        ("smile", 0.0, 0.9, 2.0), ("gaze_away", 1.9, 2.0, None)]
    second = track.nonverbal(2.0, 4.0)
    # gaze away t=1.9..3.3, the lost frame at 2.9 bridged: one event 1.9-3.4, clipped to 2.0-3.4
    assert [(e.behaviour, e.start_s, e.end_s) for e in second.events] == [("gaze_away", 2.0, 3.4)]
    assert second.features["gaze_away_share"] == pytest.approx(13 / 19)


def test_example_import_joins_everything(example, tmp_path, capsys):
    out = tmp_path / "segments.jsonl"
    assert main(["import", "--config", str(example / "import.yaml"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "P01-interview: 3 of 40 face frames skipped" in printed
    assert "1 introspection row(s) match no segment" in printed
    segments = read_segments(out)
    assert [(s.subject_id, s.label) for s in segments] == [
        ("P01", "Rest"), ("P01", "Withdrawal"), ("P02", "Rest"), ("P02", "Attack Self")]
    rest, withdrawal = segments[:2]
    assert [t.speaker for t in rest.transcript] == ["Interviewer"]  # turns that began before the end
    assert [t.speaker for t in withdrawal.transcript] == ["Interviewer", "Candidate"]
    # the candidate speaks 9 words from 2.1 to 3.6 s after the interviewer stopped at 1.5 s
    assert withdrawal.nonverbal.features["speech_rate_wps"] == pytest.approx(9 / 1.5)
    assert withdrawal.nonverbal.features["pause_before_s"] == pytest.approx(0.6)
    assert "speech_rate_wps" not in rest.nonverbal.features
    assert dict(withdrawal.person) == {"age": 24, "shame_proneness": 3.8}
    assert withdrawal.introspection == "I wanted to disappear." and rest.introspection is None


def test_step_windows_and_label_map(example):
    config = (example / "import.yaml").read_text().replace("segments: {mode: interval}",
                                                           "segments: {mode: step, step_s: 1.0}\nlabel_map: {Rest: null}")
    (example / "step.yaml").write_text(config)
    corpus = import_segments(example / "step.yaml")
    assert [(s.subject_id, s.start_s, s.label) for s in corpus.segments] == [
        ("P01", 2.0, "Withdrawal"), ("P01", 3.0, "Withdrawal"), ("P02", 2.0, "Attack Self"), ("P02", 3.0, "Attack Self")]
    assert "4 window(s) without a label, or mapped to null, made no segment" in corpus.notes


def test_unknown_label_and_missing_person_are_reported(example):
    eaf = (example / "P01_labels.eaf").read_text().replace(">Rest<", ">Smiling<")
    (example / "P01_labels.eaf").write_text(eaf)
    with pytest.raises(ValidationError, match="'Smiling' at 0.00-2.00 s is not a label of task 'deep-shame'; rename it"):
        import_segments(example / "import.yaml")
    (example / "P01_labels.eaf").write_text(eaf.replace(">Smiling<", ">Rest<"))
    (example / "persons.csv").write_text("subject_id,age\nP02,30\n")
    corpus = import_segments(example / "import.yaml")
    assert corpus.segments[2].person == {"age": 30}
    assert "1 subject(s) without a person row: P01" in corpus.notes
    assert corpus.segments[0].person is None


def test_malformed_face_files(tmp_path):
    (tmp_path / "a.csv").write_text("frame, timestamp, success\n1, 0.0, 1\n")
    with pytest.raises(EmoregError, match="missing column\\(s\\) confidence"):
        read_openface(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("frame,timestamp,confidence,success\n1,0.0,0.9,1\n2,0.2,0.9,1\n3,0.1,0.9,1\n")
    with pytest.raises(EmoregError, match="timestamps go backwards at CSV line 4 \\(0.2 -> 0.1\\)"):
        read_openface(tmp_path / "b.csv")
    (tmp_path / "c.csv").write_text("frame,timestamp,confidence,success\n1,0.0,,1\n")
    with pytest.raises(EmoregError, match="1 frame\\(s\\) with an empty .* \\(CSV lines 2\\)"):
        read_openface(tmp_path / "c.csv")


def test_pyfeat_maps_onto_openface_columns(tmp_path):
    (tmp_path / "f.csv").write_text("frame,FaceScore,AU12,Pitch\n0,0.99,0.9,10\n1,0.99,0.8,10\n2,,0.1,0\n3,0.95,0.2,0\n")
    frames = read_pyfeat(tmp_path / "f.csv", fps=2)
    assert frames["timestamp"].tolist() == [0.0, 0.5, 1.0, 1.5]
    track = FaceTrack.build(frames, load_rules())
    assert track.skipped == 1  # no face in frame 2
    nv = track.nonverbal(0.0, 2.0)
    assert nv.features["AU12_share"] == pytest.approx(2 / 3)
    assert [e.behaviour for e in nv.events] == ["smile"]  # AU12 >= 0.5 for 1.0 s
    with pytest.raises(EmoregError, match="frame rate"):
        read_pyfeat(tmp_path / "f.csv", fps=None)


def test_subtitles_whisper_elan_nova(tmp_path):
    (tmp_path / "a.srt").write_text("1\n00:00:01,000 --> 00:00:02,500\nAnna: Hello there\n\n"
                                    "2\n00:00:03,000 --> 00:00:04,000\nno speaker here\n")
    cues = read_subtitles(tmp_path / "a.srt", default_speaker="unknown")
    assert [(c.start_s, c.end_s, c.speaker, c.value) for c in cues] == [
        (1.0, 2.5, "Anna", "Hello there"), (3.0, 4.0, "unknown", "no speaker here")]
    (tmp_path / "a.vtt").write_text("WEBVTT\n\n00:01.000 --> 00:02.000\n<v Ben>Hi <b>you</b>\n")
    assert [(c.speaker, c.value) for c in read_subtitles(tmp_path / "a.vtt")] == [("Ben", "Hi you")]
    (tmp_path / "w.json").write_text('{"segments": [{"start": 0, "end": 1, "text": "a b", "words": [{}, {}, {}]}]}')
    assert read_whisper(tmp_path / "w.json", "me")[0].words == 3
    (tmp_path / "bad.json").write_text('{"text": "no segments"}')
    with pytest.raises(EmoregError, match="a list 'segments'"):
        read_whisper(tmp_path / "bad.json")
    tiers = read_eaf(EXAMPLE / "P01_labels.eaf")
    assert [(iv.start_s, iv.end_s, iv.value) for iv in tiers["strategy"]] == [(0.0, 2.0, "Rest"), (2.0, 4.0, "Withdrawal")]
    with pytest.raises(EmoregError, match="no tier\\(s\\) speech \\(tiers: strategy\\)"):
        read_eaf(EXAMPLE / "P01_labels.eaf", ["speech"])
    (tmp_path / "s.annotation").write_text(
        '<?xml version="1.0" ?>\n<annotation ssi-v="3">\n  <info ftype="ASCII" size="3" />\n'
        '  <scheme name="strategy" type="DISCRETE" color="#FFFFFFFF">\n'
        '    <item name="Rest" id="0" color="#FF000000" />\n    <item name="Withdrawal" id="1" color="#FF00FF00" />\n'
        '  </scheme>\n</annotation>\n')
    (tmp_path / "s.annotation~").write_text("0.0;1.5;0;1.0\n1.5;3.0;1;0.9\n3.0;3.5;-1;1.0\n")
    assert [(iv.start_s, iv.value) for iv in read_nova(tmp_path / "s.annotation")] == [
        (0.0, "Rest"), (1.5, "Withdrawal"), (3.0, "GARBAGE")]
    (tmp_path / "s.annotation~").write_text("0.0;1.5;7;1.0\n")
    with pytest.raises(EmoregError, match="item id 7 is not in the scheme"):
        read_nova(tmp_path / "s.annotation")


@pytest.mark.parametrize("step", ["two", "true", ".nan"])
def test_a_step_that_is_not_a_number_of_seconds_is_a_clear_error(example, step):
    from emoreg.errors import EmoregError

    config = (example / "import.yaml").read_text().replace("segments: {mode: interval}",
                                                           f"segments: {{mode: step, step_s: {step}}}")
    (example / "step.yaml").write_text(config)
    with pytest.raises(EmoregError, match="step_s must be a number of seconds above 0"):
        import_segments(example / "step.yaml")


def _eaf(slots: str, tiers: str) -> str:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<ANNOTATION_DOCUMENT FORMAT="3.0" VERSION="3.0">\n'
            f'<HEADER MEDIA_FILE="" TIME_UNITS="milliseconds"/>\n<TIME_ORDER>{slots}</TIME_ORDER>\n{tiers}'
            '<LINGUISTIC_TYPE LINGUISTIC_TYPE_ID="lt" TIME_ALIGNABLE="true"/>\n'
            '<LINGUISTIC_TYPE CONSTRAINTS="Symbolic_Subdivision" LINGUISTIC_TYPE_ID="sub" TIME_ALIGNABLE="false"/>\n'
            '</ANNOTATION_DOCUMENT>\n')


SLOTS = '<TIME_SLOT TIME_SLOT_ID="t1" TIME_VALUE="0"/><TIME_SLOT TIME_SLOT_ID="t2" TIME_VALUE="2000"/>' \
        '<TIME_SLOT TIME_SLOT_ID="t3" TIME_VALUE="4000"/>'
WORDS = ('<TIER LINGUISTIC_TYPE_REF="lt" TIER_ID="words">'
         '<ANNOTATION><ALIGNABLE_ANNOTATION ANNOTATION_ID="a1" TIME_SLOT_REF1="t1" TIME_SLOT_REF2="t2">'
         '<ANNOTATION_VALUE>hello</ANNOTATION_VALUE></ALIGNABLE_ANNOTATION></ANNOTATION>'
         '<ANNOTATION><ALIGNABLE_ANNOTATION ANNOTATION_ID="a2" TIME_SLOT_REF1="t2" TIME_SLOT_REF2="t3">'
         '<ANNOTATION_VALUE>no</ANNOTATION_VALUE></ALIGNABLE_ANNOTATION></ANNOTATION></TIER>\n')


def _ref(ann_id: str, parent: str, value: str, previous: str | None = None) -> str:
    after = f' PREVIOUS_ANNOTATION="{previous}"' if previous else ""
    return (f'<ANNOTATION><REF_ANNOTATION ANNOTATION_ID="{ann_id}" ANNOTATION_REF="{parent}"{after}>'
            f'<ANNOTATION_VALUE>{value}</ANNOTATION_VALUE></REF_ANNOTATION></ANNOTATION>')


def test_elan_reference_annotations_take_their_parents_time(tmp_path):
    """A label tier that depends on another (REF_ANNOTATION) is read, not dropped: each label gets
    its parent's span; two labels subdividing one parent share it in ELAN's chain order."""
    labels = ('<TIER LINGUISTIC_TYPE_REF="sub" PARENT_REF="words" TIER_ID="strategy">'
              + _ref("r2", "a1", "Withdrawal", previous="r1") + _ref("r1", "a1", "Rest") + _ref("r3", "a2", "Rest")
              + '</TIER>\n')
    (tmp_path / "x.eaf").write_text(_eaf(SLOTS, WORDS + labels))
    assert [(iv.start_s, iv.end_s, iv.value) for iv in read_eaf(tmp_path / "x.eaf", ["strategy"])["strategy"]] == [
        (0.0, 1.0, "Rest"), (1.0, 2.0, "Withdrawal"), (2.0, 4.0, "Rest")]
    (tmp_path / "y.eaf").write_text(_eaf(SLOTS, WORDS + labels.replace('ANNOTATION_REF="a2"', 'ANNOTATION_REF="a9"')))
    with pytest.raises(EmoregError, match="annotation r3 refers to annotation a9, which is not in the file"):
        read_eaf(tmp_path / "y.eaf")


@pytest.mark.parametrize("slots, tiers, words", [
    (SLOTS + '<TIME_SLOT TIME_SLOT_ID="t2" TIME_VALUE="3000"/>', WORDS, "time slot id t2 is used twice"),
    (SLOTS, WORDS + WORDS.replace(">hello<", ">other<"), "two tiers are called 'words'"),
    (SLOTS.replace('"4000"', '"' + "9" * 400 + '"'), WORDS, "time slot t3 has TIME_VALUE '99999999999999999999'"),
])
def test_elan_files_elan_could_not_have_written_are_refused_by_place(tmp_path, slots, tiers, words):
    (tmp_path / "x.eaf").write_text(_eaf(slots, tiers))
    with pytest.raises(EmoregError, match=words):
        read_eaf(tmp_path / "x.eaf")


def _session_labels(example, eaf_text=None, nova=None):
    """The example import with P01's labels replaced by ``eaf_text`` (an ELAN file) or NOVA files."""
    config = (example / "import.yaml").read_text()
    if eaf_text is not None:
        (example / "P01_labels.eaf").write_text(eaf_text)
    if nova is not None:
        scheme, data = nova
        (example / "P01.annotation").write_text(scheme)
        (example / "P01.annotation~").write_text(data)
        config = config.replace("labels: {elan: P01_labels.eaf, tier: strategy}", "labels: {nova: P01.annotation}")
    (example / "x.yaml").write_text(config)
    return example / "x.yaml"


NOVA_SCHEME = ('<?xml version="1.0" ?>\n<annotation ssi-v="3"><scheme name="strategy" type="DISCRETE">'
               '<item name="Rest" id="0"/><item name="Withdrawal" id="1"/></scheme></annotation>\n')


@pytest.mark.parametrize("case, words", [
    ("zero", "the label 'Rest' at 2 s has no length"),
    ("overlap", r"the labels 'Rest' \(0-3 s\) and 'Withdrawal' \(2-4 s\) overlap"),
    ("nova-repeated-id", "scheme items 'Rest' and 'Withdrawal' share the id 0"),
    ("nova-empty", "holds no annotations, so its session would make no segment"),
    ("nova-negative", "start and end must be finite seconds from 0 on"),
])
def test_labels_that_are_no_segments_are_refused_naming_file_and_place(example, case, words):
    slot = '<TIME_SLOT TIME_SLOT_ID="t{}" TIME_VALUE="{}"/>'
    ann = ('<ANNOTATION><ALIGNABLE_ANNOTATION ANNOTATION_ID="{}" TIME_SLOT_REF1="{}" TIME_SLOT_REF2="{}">'
           '<ANNOTATION_VALUE>{}</ANNOTATION_VALUE></ALIGNABLE_ANNOTATION></ANNOTATION>')
    if case in ("zero", "overlap"):
        times = ([0, 2000, 2000, 4000] if case == "zero" else [0, 3000, 2000, 4000])
        slots = "".join(slot.format(i, t) for i, t in enumerate(times))
        tier = ('<TIER LINGUISTIC_TYPE_REF="lt" TIER_ID="strategy">' + ann.format("a1", "t0", "t1", "Withdrawal"
                if case == "zero" else "Rest") + ann.format("a2", "t1" if case == "zero" else "t2", "t2" if case ==
                "zero" else "t3", "Rest" if case == "zero" else "Withdrawal") + '</TIER>\n')
        config = _session_labels(example, eaf_text=_eaf(slots, tier))
    else:
        scheme = NOVA_SCHEME.replace('id="1"', 'id="0"') if case == "nova-repeated-id" else NOVA_SCHEME
        data = {"nova-repeated-id": "0;2;0;1\n", "nova-empty": "", "nova-negative": "-1.0;2.0;0;1\n"}[case]
        config = _session_labels(example, nova=(scheme, data))
    before = {p: p.read_bytes() for p in example.iterdir()}
    with pytest.raises(EmoregError, match=words):
        import_segments(config)
    assert {p: p.read_bytes() for p in example.iterdir()} == before  # nothing written beside the inputs


def test_an_openface_timestamp_that_is_not_finite_is_refused(tmp_path):
    (tmp_path / "a.csv").write_text("frame,timestamp,confidence,success\n1,0.0,0.9,1\n2,inf,0.9,1\n")
    with pytest.raises(EmoregError, match="timestamp inf at CSV line 3 is not a finite number of seconds"):
        read_openface(tmp_path / "a.csv")


def test_an_unaligned_annotation_is_an_error_only_on_a_tier_that_is_read(tmp_path):
    """ELAN leaves the time slots of subdivided child tiers without a time; a file that has one still
    gives its other tiers, and reading that tier names it."""
    slots = SLOTS + '<TIME_SLOT TIME_SLOT_ID="t9"/>'
    gestures = ('<TIER LINGUISTIC_TYPE_REF="lt" TIER_ID="gestures">'
                '<ANNOTATION><ALIGNABLE_ANNOTATION ANNOTATION_ID="g1" TIME_SLOT_REF1="t1" TIME_SLOT_REF2="t9">'
                '<ANNOTATION_VALUE>nod</ANNOTATION_VALUE></ALIGNABLE_ANNOTATION></ANNOTATION></TIER>\n')
    (tmp_path / "x.eaf").write_text(_eaf(slots, WORDS + gestures))
    assert [iv.value for iv in read_eaf(tmp_path / "x.eaf", ["words"])["words"]] == ["hello", "no"]
    with pytest.raises(EmoregError, match=r"annotation g1 \(read for tier gestures\) has an unaligned time slot"):
        read_eaf(tmp_path / "x.eaf", ["gestures"])
