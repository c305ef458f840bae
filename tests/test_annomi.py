from collections import Counter, defaultdict
from pathlib import Path

import pandas as pd
import pytest

from emoreg.corpora.annomi import FILES, fetch_annomi, find_annomi, load_annomi, subject_groups, title_key
from emoreg.errors import EmoregError
from emoreg.tasks import ANNOMI_THERAPIST, ANNOMI_THERAPIST_FINE


def test_real_corpus_counts(annomi_client):
    segments = annomi_client.segments
    assert len(segments) == 4817
    assert Counter(s.label for s in segments) == {"change": 1174, "neutral": 3102, "sustain": 541}
    assert len({s.session_id for s in segments}) == 133
    assert len({s.subject_id for s in segments}) == 91
    assert len({s.segment_id for s in segments}) == 4817


def test_real_therapist_task(annomi_data_dir):
    corpus = load_annomi(ANNOMI_THERAPIST)
    assert Counter(s.label for s in corpus.segments) == {
        "other": 1586, "question": 1386, "reflection": 1296, "therapist_input": 614}


def test_real_fine_therapist_task(annomi_data_dir):
    """Nine classes from AnnoMI-full's subtypes; each utterance's main behaviour stays the released one."""
    fine = load_annomi(ANNOMI_THERAPIST_FINE)
    assert Counter(s.label for s in fine.segments) == {
        "other": 1586, "open_question": 819, "simple_reflection": 658, "complex_reflection": 638,
        "closed_question": 567, "information": 385, "advice": 133, "negotiation": 64, "options": 30}
    main = {s.segment_id: s.label for s in load_annomi(ANNOMI_THERAPIST).segments}
    coarse = {"simple_reflection": "reflection", "complex_reflection": "reflection", "open_question": "question",
              "closed_question": "question", "other": "other"}
    assert all(main[s.segment_id] == coarse.get(s.label, "therapist_input") for s in fine.segments)
    left_out = set(main) - {s.segment_id for s in fine.segments}
    assert left_out == {"annomi-t063-u000", "annomi-t080-u016"}  # no subtype given: listed, not dropped silently
    assert any("2 therapist utterance(s) left out" in n and "t63/u0, t80/u16" in n for n in fine.notes)
    assert any(n.startswith("10 utterance(s) whose annotators split evenly") for n in fine.notes)
    assert len(fine.files) == 2 and all(FILES[Path(f).name] == c for f, c in fine.files.items())


def test_fine_therapist_labels_take_the_annotators_majority_and_say_what_they_left_out(tiny_annomi):
    corpus = load_annomi(ANNOMI_THERAPIST_FINE, path=tiny_annomi, full_path=tiny_annomi.with_name("annomi_tiny_full.csv"))
    assert {s.segment_id: s.label for s in corpus.segments} == {
        "annomi-t000-u000": "open_question",
        "annomi-t000-u002": "complex_reflection",  # complex 2, simple 1; the annotator who said question not counted
        "annomi-t002-u000": "closed_question",
        "annomi-t002-u002": "closed_question",  # open 1, closed 1: the first alphabetically, and counted
        "annomi-t003-u000": "open_question",
        "annomi-t004-u000": "other"}
    assert any("1 utterance(s) whose annotators split evenly" in n for n in corpus.notes)
    assert any("1 therapist utterance(s) left out" in n and "(t1/u0)" in n for n in corpus.notes)
    # left out of the fine task only: the four-class task keeps it
    coarse = [s.segment_id for s in load_annomi(ANNOMI_THERAPIST, path=tiny_annomi).segments]
    assert "annomi-t001-u000" in coarse and len(coarse) == len(corpus.segments) + 1


def test_fine_therapist_task_errors_name_the_file_and_the_fix(tiny_annomi, tmp_path):
    with pytest.raises(EmoregError, match="reads AnnoMI-full.csv, not found at .*emoreg data fetch annomi"):
        load_annomi(ANNOMI_THERAPIST_FINE, path=tiny_annomi)  # no AnnoMI-full.csv beside the tiny file
    full = pd.read_csv(tiny_annomi.with_name("annomi_tiny_full.csv"), dtype=str, keep_default_na=False)
    full.drop(columns=["question_subtype"]).to_csv(tmp_path / "no-subtype.csv", index=False)
    with pytest.raises(EmoregError, match="not AnnoMI-full.csv; missing column\\(s\\) question_subtype"):
        load_annomi(ANNOMI_THERAPIST_FINE, path=tiny_annomi, full_path=tmp_path / "no-subtype.csv")
    full.loc[0, "question_subtype"] = "rhetorical"
    full.to_csv(tmp_path / "odd.csv", index=False)
    with pytest.raises(EmoregError, match="transcript 0, utterance 0: question_subtype 'rhetorical' is none of open, closed"):
        load_annomi(ANNOMI_THERAPIST_FINE, path=tiny_annomi, full_path=tmp_path / "odd.csv")


def test_grouping_merges_the_same_people_on_real_data(annomi_client):
    subject_of = {s.meta["transcript_id"]: s.subject_id for s in annomi_client.segments}
    same = [
        (3, 19, 40, 50, 103),  # one video, five role plays
        (20, 106),  # The Effective / Ineffective Physician
        (109, 123),  # The Effective / Ineffective Dentist
        (78, 92),  # ComMIt Asthma with / without MI
        (33, 115),  # Dental practice with David, and "How NOT to do" it
        (6, 27, 127),  # "Sal"
        (28, 39, 60),  # Monkey on My Back parts 1, 2, 4
        (25, 102),  # MI good / bad example
    ]
    for group in same:
        assert len({subject_of[t] for t in group}) == 1, group
    different = [(0, 1), (101, 99), (95, 25), (9, 17)]  # Barbara/Dave, Jill/Steve, "MI 5 30 18", two SBIRT cases
    for a, b in different:
        assert subject_of[a] != subject_of[b], (a, b)


def test_a_session_never_spans_two_subjects(annomi_client):
    subjects = defaultdict(set)
    for s in annomi_client.segments:
        subjects[s.session_id].add(s.subject_id)
    assert all(len(v) == 1 for v in subjects.values())


def test_title_key_strips_quality_words_and_parts():
    assert title_key("The Ineffective Pharmacist: Non-Motivational Approach") == "pharmacist"
    assert title_key("The Effective Pharmacist: Motivational Interviewing Demonstration") == "pharmacist"
    assert title_key("Part 2: A Non-Diet Approach with Motivational Interviewing Role Play, Sharing") != \
        title_key("Part 3: A Non-Diet Approach with Motivational Interviewing Role Play, Focusing")
    assert title_key("Monkey on My Back - Part 4") == title_key("Monkey on My Back - Part 1")


def test_tiny_fixture_segments_transcript_timing_and_groups(tiny_annomi):
    corpus = load_annomi(path=tiny_annomi)
    by_id = {s.segment_id: s for s in corpus.segments}
    assert list(by_id) == ["annomi-t000-u001", "annomi-t000-u003", "annomi-t001-u001",
                           "annomi-t002-u001", "annomi-t002-u003", "annomi-t003-u001", "annomi-t004-u001"]
    seg = by_id["annomi-t000-u003"]
    assert [t.speaker for t in seg.transcript] == ["therapist", "client", "therapist", "client"]
    assert seg.transcript[-1].text == "But I like smoking, it calms me down."
    assert seg.context == "A motivational-interviewing session about smoking cessation."
    assert seg.meta["previous_therapist_behaviour"] == "reflection"
    # the effective/ineffective dentist pair is one subject; Steve's two parts share a video
    assert by_id["annomi-t000-u001"].subject_id == by_id["annomi-t001-u001"].subject_id == "annomi-s000"
    assert by_id["annomi-t003-u001"].subject_id == by_id["annomi-t004-u001"].subject_id == "annomi-s003"
    assert by_id["annomi-t002-u001"].subject_id == "annomi-s002"
    # timing: 6 s to the next turn, 10 words; the malformed "00:00:2x" empties the timing before it
    first = by_id["annomi-t000-u001"]
    assert first.start_s == 9.0 and first.end_s == 15.0
    assert first.nonverbal.features == {"turn_seconds": 6.0, "words_per_second": 10 / 6}
    assert by_id["annomi-t002-u001"].end_s is None and by_id["annomi-t002-u001"].nonverbal is None
    assert by_id["annomi-t001-u001"].end_s is None  # last utterance: end unknown
    assert any("1 timestamp(s) not in h:mm:ss form" in n and "t2/u2: '00:00:2x'" in n for n in corpus.notes)
    assert any("differs from the pinned AnnoMI commit" in n for n in corpus.notes)


def test_subject_groups_unit():
    frame = pd.DataFrame({"transcript_id": [5, 7, 9, 11],
                          "video_url": ["u1", "u2", "u1", "u3"],
                          "video_title": ["A talk - 1", "ComMIt Foo Dialogue with MI", "B", "ComMIt Foo Dialogue without MI"]})
    assert subject_groups(frame) == {5: "annomi-s005", 7: "annomi-s007", 9: "annomi-s005", 11: "annomi-s007"}


def test_missing_corpus_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOREG_DATA_DIR", str(tmp_path / "nothing"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(EmoregError, match="emoreg data fetch annomi"):
        find_annomi()


def test_fetch_verifies_checksums_and_keeps_nothing_on_mismatch(tmp_path, annomi_data_dir):
    source = annomi_data_dir / "annomi"
    dest = tmp_path / "data"
    lines = fetch_annomi(dest, base_url=source.as_uri() + "/", progress=False)
    assert [l.endswith("downloaded, checksum ok") for l in lines] == [True, True]
    assert sorted(p.name for p in (dest / "annomi").iterdir()) == sorted(FILES)
    again = fetch_annomi(dest, base_url=source.as_uri() + "/", progress=False)
    assert all(l.endswith("present, checksum ok") for l in again)

    bad_source = tmp_path / "bad"
    bad_source.mkdir()
    for name in FILES:
        (bad_source / name).write_text("not annomi\n")
    other = tmp_path / "other"
    with pytest.raises(EmoregError, match="checksum mismatch .*nothing was kept"):
        fetch_annomi(other, base_url=bad_source.as_uri() + "/", progress=False)
    assert list((other / "annomi").iterdir()) == []


def test_failed_download_is_a_clear_error(tmp_path):
    with pytest.raises(EmoregError, match="could not download .*nothing was kept"):
        fetch_annomi(tmp_path, base_url=(tmp_path / "missing").as_uri() + "/", progress=False)
    assert list((tmp_path / "annomi").iterdir()) == []
