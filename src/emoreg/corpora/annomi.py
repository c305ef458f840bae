"""AnnoMI: expert-annotated motivational-interviewing dialogues (Wu et al., ICASSP 2022).

One segment per client utterance (task ``annomi-client-talk``) or per therapist utterance
(task ``annomi-therapist``; ``annomi-therapist-fine`` splits its behaviours by the subtype the
annotators gave in AnnoMI-full.csv, ``fine_therapist_labels``). Sources:

* context: the session's topic;
* transcript: every earlier turn of both speakers, then the current one;
* nonverbal: timing only (AnnoMI has no video features): ``turn_seconds``, the time from this
  utterance's start to the next one's (1-second resolution), and ``words_per_second``;
* person, introspection: not available.

Subjects. The same people appear in several transcripts: some videos hold several sessions,
"effective vs ineffective" demonstrations re-enact one scenario with the same actors, and some
series share named actors. A subject is therefore a group of transcripts, merged when any of
these holds (see ``subject_groups``):

1. they come from the same video (same ``video_url``);
2. their titles are equal once demonstration-quality words (effective/ineffective, with/without
   MI, "How NOT to do", good/bad example, "NEW VIDEO:") and part or episode numbers are removed;
3. they are listed in ``SAME_PEOPLE`` (series whose titles name the same person).
"""

from __future__ import annotations

import hashlib
import re
import tempfile
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from ..errors import EmoregError
from ..segments import Nonverbal, Segment, Turn
from ..tasks import ANNOMI_CLIENT_TALK, ANNOMI_THERAPIST, ANNOMI_THERAPIST_FINE, Task
from .base import Corpus, data_dirs, sha256_file

COMMIT = "42936645ec3857a9c84ab296a36a3c34b779ef49"
BASE_URL = f"https://raw.githubusercontent.com/uccollab/AnnoMI/{COMMIT}/"
FILES = {
    "AnnoMI-simple.csv": "b178db3b0b9858a0fa4ed670dabeccd63e975ba67e141d7ae16f2e8214f78e61",
    "AnnoMI-full.csv": "3b60fec5e9d83cbb18ade0e412fb9afaef3b81724748a5d715f844bdd7432c9f",
}
COLUMNS = (
    "transcript_id", "mi_quality", "video_title", "video_url", "topic", "utterance_id",
    "interlocutor", "timestamp", "utterance_text", "main_therapist_behaviour", "client_talk_type",
)

# Transcript groups whose titles name the same person (rule 3), with the reason.
SAME_PEOPLE: dict[str, tuple[int, ...]] = {
    '"Sal" and his asthma (agenda setting, with and without MI)': (6, 27, 127),
    "Aviyana, Deborah and Sheri (values-clarification role plays)": (22, 41, 76),
    "Motivational Techniques series: Daryl, Ricky and Ken in several roles": (16, 37, 83, 64, 133, 18, 49),
    "Integrated Care Setting series, parts one to three (one client)": (12, 38, 108),
}

_QUALITY_WORDS = [
    r"^new video:\s*",
    r"^how not to do\s+",
    r"\b(the )?(in)?effective\b",
    r":?\s*(non-motivational approach|motivational interviewing demonstration)\s*$",
    r"\bwith(out)? mi\b",
    r"\b(good|bad)(?= example\b)",
]
_GENERIC_WORDS = {"mi", "motivational", "interviewing"}
_PARTS = [
    r"\bpart\s+(\d+|one|two|three|four|five|i+v?)\b",
    r"\b\d+\b",
]


def title_key(title: str) -> str:
    """A video title without quality words and part numbers (rule 2 of the subject grouping)."""
    key = title.lower()
    for pattern in _QUALITY_WORDS + _PARTS:
        key = re.sub(pattern, " ", key)
    key = re.sub(r"[^a-z]+", " ", key)
    return " ".join(key.split())


def subject_groups(transcripts: pd.DataFrame) -> dict[int, str]:
    """Map transcript_id -> subject id, merging transcripts that show the same people.

    ``transcripts`` has one row per transcript with ``transcript_id``, ``video_url`` and
    ``video_title``. Subject ids are ``annomi-s{smallest transcript id in the group:03d}``.
    """
    parent = {int(t): int(t) for t in transcripts["transcript_id"]}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    for column in ("video_url", "title_key"):
        first: dict[str, int] = {}
        keys = transcripts["video_title"].map(title_key) if column == "title_key" else transcripts[column]
        for tid, key in zip(transcripts["transcript_id"], keys):
            if column == "title_key" and not set(key.split()) - _GENERIC_WORDS:
                continue  # says nothing about the people ("MI 5 30 18" -> "mi")
            if key in first:
                union(first[key], int(tid))
            else:
                first[key] = int(tid)
    for group in SAME_PEOPLE.values():
        present = [t for t in group if t in parent]
        for t in present[1:]:
            union(present[0], t)
    return {t: f"annomi-s{find(t):03d}" for t in parent}


def find_annomi(filename: str = "AnnoMI-simple.csv") -> Path:
    """The AnnoMI CSV under ``$EMOREG_DATA_DIR/annomi`` or the user cache, or a clear error."""
    tried = [d / "annomi" / filename for d in data_dirs()]
    for path in tried:
        if path.is_file():
            return path
    raise EmoregError(
        f"AnnoMI not found (looked for {', '.join(str(p) for p in tried)}); run "
        "`emoreg data fetch annomi` to download it, or set EMOREG_DATA_DIR to the folder that "
        "holds annomi/AnnoMI-simple.csv"
    )


def fetch_annomi(dest: Path | None = None, base_url: str = BASE_URL, progress: bool = True) -> list[str]:
    """Download the AnnoMI CSVs at the pinned commit into ``dest/annomi`` and verify sha256.

    A file already present with the right checksum is kept. A download is written to a
    temporary file and renamed only after its checksum matched, so a failure never leaves a
    half or wrong file behind. Returns one line of what happened per file.
    """
    dest = Path(dest) if dest is not None else (data_dirs()[0])
    folder = dest / "annomi"
    folder.mkdir(parents=True, exist_ok=True)
    report = []
    for name, expected in FILES.items():
        target = folder / name
        if target.is_file() and sha256_file(target) == expected:
            report.append(f"{target}: present, checksum ok")
            continue
        url = base_url + name
        digest = hashlib.sha256()
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            with open(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=name, disable=not progress) as bar:
                    for block in iter(lambda: response.read(1 << 16), b""):
                        out.write(block)
                        digest.update(block)
                        bar.update(len(block))
            if digest.hexdigest() != expected:
                raise EmoregError(
                    f"{url}: checksum mismatch (expected sha256 {expected}, got "
                    f"{digest.hexdigest()}); nothing was kept. The pinned file may have been "
                    "changed or the download corrupted; try again or copy the file by hand"
                )
            tmp.replace(target)
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise EmoregError(
                f"could not download {url}: {reason}; nothing was kept. Check the network, or "
                f"copy {name} into {folder} by hand (sha256 {expected})"
            ) from None
        finally:
            tmp.unlink(missing_ok=True)
        report.append(f"{target}: downloaded, checksum ok")
    return report


# AnnoMI-full.csv: the subtype column of each main therapist behaviour, and the fine label of each
# (behaviour, subtype); "other" has no subtype
SUBTYPE_COLUMNS = {"reflection": "reflection_subtype", "question": "question_subtype",
                   "therapist_input": "therapist_input_subtype"}
FINE_LABELS = {("reflection", "simple"): "simple_reflection", ("reflection", "complex"): "complex_reflection",
               ("question", "open"): "open_question", ("question", "closed"): "closed_question",
               ("therapist_input", "information"): "information", ("therapist_input", "advice"): "advice",
               ("therapist_input", "options"): "options", ("therapist_input", "negotiation"): "negotiation"}
FULL_COLUMNS = ("transcript_id", "utterance_id", "annotator_id", "main_therapist_behaviour", *SUBTYPE_COLUMNS.values())


def fine_therapist_labels(full: pd.DataFrame, main: dict[tuple[int, int], str],
                          where: str) -> tuple[dict[tuple[int, int], str | None], list[str]]:
    """The fine label of every therapist utterance: its main behaviour (``main``, AnnoMI-simple's
    released label, keyed by (transcript_id, utterance_id)) split by the subtype its annotators gave.

    Most utterances have one annotator; 7 transcripts were coded by all 10. The subtype is the most
    common one among the annotators whose main behaviour is the released one; a tie takes the first
    subtype in alphabetical order (counted in the notes). An utterance none of whose annotators gave
    a subtype gets None (the loader leaves it out and lists it). Returns the labels and notes."""
    missing = [c for c in FULL_COLUMNS if c not in full.columns]
    if missing:
        raise EmoregError(f"{where}: not AnnoMI-full.csv; missing column(s) {', '.join(missing)}")
    given: dict[tuple[int, int], list[str]] = {}
    for row in full.to_dict("records"):
        key = (int(row["transcript_id"]), int(row["utterance_id"]))
        behaviour = main.get(key)
        if behaviour not in SUBTYPE_COLUMNS or row["main_therapist_behaviour"] != behaviour:
            continue
        subtype = row[SUBTYPE_COLUMNS[behaviour]]
        if subtype == "n/a":
            continue
        if (behaviour, subtype) not in FINE_LABELS:
            raise EmoregError(f"{where}: transcript {key[0]}, utterance {key[1]}: {SUBTYPE_COLUMNS[behaviour]} "
                              f"{subtype!r} is none of {', '.join(s for b, s in FINE_LABELS if b == behaviour)}")
        given.setdefault(key, []).append(subtype)
    labels: dict[tuple[int, int], str | None] = {}
    ties = 0
    for key, behaviour in main.items():
        if behaviour == "other":
            labels[key] = "other"
            continue
        if behaviour not in SUBTYPE_COLUMNS:
            raise EmoregError(f"{where}: transcript {key[0]}, utterance {key[1]}: main_therapist_behaviour "
                              f"{behaviour!r} in AnnoMI-simple.csv is none of {', '.join([*SUBTYPE_COLUMNS, 'other'])}")
        counts = Counter(given.get(key, [])).most_common()
        if not counts:
            labels[key] = None
            continue
        top = sorted(s for s, n in counts if n == counts[0][1])
        ties += len(top) > 1
        labels[key] = FINE_LABELS[(behaviour, top[0])]
    notes = [f"{ties} utterance(s) whose annotators split evenly between subtypes: the first in "
             "alphabetical order taken"] if ties else []
    return labels, notes


def _seconds(stamp: str) -> float | None:
    match = re.fullmatch(r"(\d+):(\d{2}):(\d{2})", stamp.strip())
    if not match:
        return None
    h, m, s = (int(g) for g in match.groups())
    return float(h * 3600 + m * 60 + s)


def load_annomi(task: Task = ANNOMI_CLIENT_TALK, path: str | Path | None = None,
                full_path: str | Path | None = None) -> Corpus:
    """AnnoMI as segments for ``task`` (``annomi-client-talk``, ``annomi-therapist`` or
    ``annomi-therapist-fine``; the last also reads AnnoMI-full.csv: ``full_path``, else beside
    ``path``, else where the data folders hold it)."""
    roles = {ANNOMI_CLIENT_TALK.name: ("client", "client_talk_type"),
             ANNOMI_THERAPIST.name: ("therapist", "main_therapist_behaviour"),
             ANNOMI_THERAPIST_FINE.name: ("therapist", None)}  # from AnnoMI-full.csv
    if task.name not in roles:
        raise EmoregError(f"AnnoMI is labelled for tasks {', '.join(roles)}, not {task.name!r}")
    role, label_column = roles[task.name]
    if task.name == ANNOMI_THERAPIST_FINE.name and full_path is None:
        full_path = Path(path).with_name("AnnoMI-full.csv") if path is not None else find_annomi("AnnoMI-full.csv")
    path = Path(path) if path is not None else find_annomi()
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise EmoregError(f"{path}: not an AnnoMI CSV; missing column(s) {', '.join(missing)}")
    notes = []
    checksum = sha256_file(path)
    if checksum != FILES.get(path.name):
        notes.append(f"{path.name} differs from the pinned AnnoMI commit {COMMIT[:10]} "
                     "(sha256 mismatch); counts may differ from published ones")
    df["transcript_id"] = df["transcript_id"].astype(int)
    df["utterance_id"] = df["utterance_id"].astype(int)
    df = df.sort_values(["transcript_id", "utterance_id"], kind="stable")
    files = {str(path): checksum}
    fine: dict[tuple[int, int], str | None] = {}
    if label_column is None:  # annomi-therapist-fine
        full_path = Path(full_path)
        if not full_path.is_file():
            raise EmoregError(f"task {task.name} reads AnnoMI-full.csv, not found at {full_path}; run `emoreg data "
                              "fetch annomi` (it downloads both files) or copy it beside AnnoMI-simple.csv")
        files[str(full_path)] = sha256_file(full_path)
        if files[str(full_path)] != FILES.get(full_path.name):
            notes.append(f"{full_path.name} differs from the pinned AnnoMI commit {COMMIT[:10]} (sha256 mismatch); "
                         "counts may differ from published ones")
        therapist = df[df["interlocutor"] == "therapist"]
        main = dict(zip(zip(therapist["transcript_id"], therapist["utterance_id"]),
                        therapist["main_therapist_behaviour"]))
        fine, fine_notes = fine_therapist_labels(pd.read_csv(full_path, dtype=str, keep_default_na=False), main,
                                                 str(full_path))
        notes += fine_notes
    transcripts = df.drop_duplicates("transcript_id")[["transcript_id", "video_url", "video_title"]]
    subjects = subject_groups(transcripts)

    segments: list[Segment] = []
    bad_stamps, backwards = [], 0
    for tid, rows in df.groupby("transcript_id", sort=True):
        session = f"annomi-t{tid:03d}"
        starts = [_seconds(s) for s in rows["timestamp"]]
        bad_stamps += [f"t{tid}/u{u}: {s!r}" for u, s, v in zip(rows["utterance_id"], rows["timestamp"], starts) if v is None]
        turns: list[Turn] = []
        last_therapist: str | None = None
        records = rows.to_dict("records")
        for i, row in enumerate(records):
            start = starts[i]
            turn = Turn(row["interlocutor"], row["utterance_text"], start)
            turns.append(turn)
            nxt = starts[i + 1] if i + 1 < len(records) else None
            end = None
            if start is not None and nxt is not None:
                if nxt >= start:
                    end = nxt
                else:
                    backwards += 1
            label = None
            if row["interlocutor"] == role:  # the fine task's label is None where no subtype was given
                label = row[label_column] if label_column else fine[(int(tid), row["utterance_id"])]
            if label is not None:
                features = {}
                if end is not None and end > start:
                    features["turn_seconds"] = end - start
                    features["words_per_second"] = len(row["utterance_text"].split()) / (end - start)
                meta = {"transcript_id": int(tid), "utterance_id": row["utterance_id"],
                        "turn_index": i, "n_turns": len(records),
                        "position": i / max(len(records) - 1, 1), "mi_quality": row["mi_quality"],
                        "video_title": row["video_title"], "topic": row["topic"]}
                if role == "client":
                    meta["previous_therapist_behaviour"] = last_therapist
                segments.append(Segment(
                    segment_id=f"{session}-u{row['utterance_id']:03d}",
                    subject_id=subjects[int(tid)],
                    session_id=session,
                    start_s=start,
                    end_s=end,
                    label=label,
                    context=f"A motivational-interviewing session about {row['topic'].strip()}.",
                    transcript=tuple(turns),
                    nonverbal=Nonverbal(features=features) if features else None,
                    meta=meta,
                ))
            if row["interlocutor"] == "therapist":
                last_therapist = row["main_therapist_behaviour"] or None
    unknown = Counter(s.label for s in segments if s.label not in task.labels)
    if unknown:
        raise EmoregError(f"{path}: labels outside task {task.name!r} in column {label_column or 'the fine labels'}: "
                          f"{dict(unknown)}")
    n_subjects = len(set(subjects.values()))
    notes.append(f"{len(transcripts)} transcripts from {transcripts['video_url'].nunique()} videos, "
                 f"grouped into {n_subjects} subjects (same video, same re-enacted scenario, or "
                 "same named actors; see emoreg.corpora.annomi)")
    if bad_stamps:
        notes.append(f"{len(bad_stamps)} timestamp(s) not in h:mm:ss form, start and timing "
                     f"features left empty there: {', '.join(bad_stamps[:5])}")
    if backwards:
        notes.append(f"{backwards} utterance(s) whose next timestamp is earlier than their own: "
                     "end and timing features left empty there")
    unlabelled = [f"t{t}/u{u}" for (t, u), label in fine.items() if label is None]
    if unlabelled:
        notes.append(f"{len(unlabelled)} therapist utterance(s) left out: no annotator gave the subtype of their "
                     f"main behaviour ({', '.join(sorted(unlabelled)[:10])}); they stay in the others' transcripts")
    return Corpus(
        name="annomi",
        task=task,
        segments=segments,
        files=files,
        notes=notes,
        source_notes={
            "context": "the session's topic",
            "history": "all earlier turns of therapist and client",
            "utterance": f"the current {role} utterance",
            "nonverbal": "timing only: seconds to the next turn and words per second (1 s resolution)",
            "person": "not available in AnnoMI",
            "introspection": "not available in AnnoMI",
        },
    )
