"""Hostile but fair input, generated (hypothesis): segments, configs, task files and HTTP bodies.

For every generated input: a clear error (exit 2, ``EmoregError``/``ValidationError``, or a 4xx
naming the field), never a traceback or a 500, and nothing written when it is refused. The
default profile keeps the run within a minute; ``HYPOTHESIS_PROFILE=nightly`` tries many more.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emoreg.cli import main
from emoreg.errors import EmoregError
from emoreg.evaluation.config import config_from_dict
from emoreg.segment_files import read_segments
from emoreg.tasks import DEEP_SHAME, task_from_dict

settings.register_profile("default", max_examples=40, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.register_profile("nightly", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# the values a hostile file holds: non-finite and huge numbers, lone surrogates, wrong kinds
hostile_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10 ** 300, max_value=10 ** 400),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["\ud800", "a\udc00b", "", " ", "Rest", "Withdrawal", "<script>", "1e999"]),
)
hostile_value = st.recursive(hostile_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=8)

VALID = {"segment_id": "a", "subject_id": "s1", "session_id": "s1", "label": "Rest", "start_s": 0.0, "end_s": 2.0,
         "context": "A job interview.", "transcript": [{"speaker": "A", "text": "Hello."}],
         "nonverbal": {"events": [{"behaviour": "smile", "start_s": 0.5, "end_s": 1.0}], "features": {"au12": 0.3}},
         "person": {"age": 30}, "introspection": "I felt fine."}
FIELDS = ["segment_id", "subject_id", "session_id", "label", "start_s", "end_s", "context", "transcript",
          "nonverbal", "person", "introspection", "meta", "extra"]


def _json_line(record) -> bytes:
    """JSON as a hostile writer would produce it: NaN/Infinity literals and escaped surrogates allowed."""
    return json.dumps(record, allow_nan=True, ensure_ascii=True).encode() + b"\n"


@st.composite
def hostile_records(draw):
    record = dict(VALID)
    for field in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3, unique=True)):
        record[field] = draw(hostile_value)
    return record


@given(records=st.lists(hostile_records(), min_size=1, max_size=4),
       junk=st.sampled_from([b"", b"{not json\n", b"\xff\xfe\n", b"[" * 5000 + b"\n", b'{"a": 1' + b"9" * 5000 + b"}\n"]))
def test_segment_files_give_a_clear_error_or_valid_segments(tmp_path_factory, records, junk):
    folder = tmp_path_factory.mktemp("seg")
    path = folder / "corpus.jsonl"
    path.write_bytes(b"".join(_json_line(r) for r in records) + junk)
    try:
        segments = read_segments(path, DEEP_SHAME)
    except EmoregError as exc:
        assert str(path) in str(exc)
        return
    for s in segments:  # what was accepted can be written back and read again
        for value in (s.start_s, s.end_s):
            assert value is None or math.isfinite(value)
        json.dumps(s.to_dict(), allow_nan=False).encode("utf-8")


@given(records=st.lists(hostile_records(), min_size=1, max_size=3))
def test_check_exits_2_with_a_message_and_writes_nothing(tmp_path_factory, records, capsys):
    folder = tmp_path_factory.mktemp("check")
    path = folder / "corpus.jsonl"
    path.write_bytes(b"".join(_json_line(r) for r in records))
    out = folder / "out"
    code = main(["check", "--corpus", str(path), "--task", "deep-shame", "--out", str(out)])
    err = capsys.readouterr().err
    assert code in (0, 2) and "Traceback" not in err
    if code == 2:
        assert err.startswith("emoreg: error:") and not out.exists()


config_values = st.fixed_dictionaries({}, optional={
    "corpus": st.one_of(st.just("deep-example"), hostile_scalar), "task": hostile_value,
    "model": st.one_of(st.sampled_from(["tfidf", "llm", "ensemble", "calibrated"]), hostile_scalar),
    "params": hostile_value, "prompt": hostile_value, "split": hostile_value, "seed": hostile_scalar,
    "calibrate": hostile_value, "save_models": hostile_scalar, "bogus": hostile_value})


@given(data=st.one_of(config_values, hostile_value))
def test_configs_are_valid_or_refused_with_every_problem_named(data):
    try:
        config_from_dict(data, "c.yaml")
    except EmoregError as exc:
        assert "c.yaml" in str(exc) or "calibrate" in str(exc) or "model" in str(exc)


@given(data=st.one_of(hostile_value, st.fixed_dictionaries({"name": hostile_scalar, "labels": hostile_value})))
def test_task_files_are_valid_or_refused(data):
    try:
        task_from_dict(data, "task.yaml")
    except EmoregError as exc:
        assert "task.yaml" in str(exc)


@given(text=st.text(max_size=200))
def test_yaml_files_of_any_text_are_read_or_refused_clearly(tmp_path_factory, text, capsys):
    path = tmp_path_factory.mktemp("yaml") / "config.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    out = path.parent / "run"
    code = main(["evaluate", str(path), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("emoreg: error:") and "Traceback" not in err and not out.exists()


# ---------------------------------------------------------------- HTTP
@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from fastapi.testclient import TestClient

    from emoreg.models import load_model
    from emoreg.serve.app import create_app

    folder = tmp_path_factory.mktemp("served")
    config = Path(__file__).resolve().parents[1] / "configs" / "baselines" / "deep-example-tfidf.yaml"
    assert main(["train", str(config), "--out", str(folder / "model")]) == 0
    app = create_app(load_model(folder / "model"), folder / "s.sqlite")
    with TestClient(app, raise_server_exceptions=False) as c:
        c.sid = c.post("/sessions", json={}).json()["session_id"]
        yield c


segment_bodies = st.fixed_dictionaries({}, optional={
    "turns": st.one_of(hostile_value, st.lists(st.fixed_dictionaries(
        {"speaker": hostile_scalar, "text": hostile_scalar}, optional={"start_s": hostile_scalar}), max_size=3)),
    "events": hostile_value, "features": st.one_of(hostile_value, st.dictionaries(st.text(max_size=5), hostile_scalar)),
    "start_s": hostile_scalar, "end_s": hostile_scalar, "introspection": hostile_scalar})


@given(body=st.one_of(segment_bodies, hostile_value))
def test_posted_segments_get_an_answer_or_a_4xx_never_a_500(client, body):
    before = len(client.get(f"/sessions/{client.sid}/timeline").json()["segments"])
    r = client.post(f"/sessions/{client.sid}/segments", content=_json_line(body),
                    headers={"content-type": "application/json"})
    assert r.status_code in (200, 409, 413, 422), (r.status_code, r.text[:300])
    after = len(client.get(f"/sessions/{client.sid}/timeline").json()["segments"])
    assert after == before + (r.status_code == 200)  # a refused post stores nothing
    if r.status_code == 422:
        assert all("loc" in d and "msg" in d for d in r.json()["detail"])


@given(body=st.one_of(st.fixed_dictionaries({"segments": st.lists(hostile_records(), max_size=3)}), hostile_value))
def test_classify_batches_get_an_answer_or_a_4xx(client, body):
    r = client.post("/classify", content=_json_line(body), headers={"content-type": "application/json"})
    assert r.status_code in (200, 413, 422), (r.status_code, r.text[:300])


@given(body=st.fixed_dictionaries({}, optional={"context": hostile_scalar, "person": hostile_value}))
def test_sessions_open_or_get_a_4xx(client, body):
    r = client.post("/sessions", content=_json_line(body), headers={"content-type": "application/json"})
    assert r.status_code in (201, 422), (r.status_code, r.text[:300])


# ---------------------------------------------------------------- importer files
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "import"
cell_text = st.sampled_from(["yes", "", "nan", "1e999", "abc", "-", "2,5", "\ufeff1", "inf"])


@st.composite
def broken_import(draw):
    """The example import, with one of its files damaged the way real files are."""
    kind = draw(st.sampled_from(["openface", "whisper", "elan", "persons", "introspection", "bytes", "truncate"]))
    files = {name: (EXAMPLE / name).read_bytes() for name in
             ("P01_openface.csv", "P01_whisper.json", "P01_labels.eaf", "persons.csv", "introspection.csv")}
    if kind == "openface":
        lines = files["P01_openface.csv"].decode().splitlines()
        row = draw(st.integers(1, len(lines) - 1))
        cells = lines[row].split(",")
        cells[draw(st.integers(0, len(cells) - 1))] = draw(cell_text)
        lines[row] = ",".join(cells)
        files["P01_openface.csv"] = "\n".join(lines).encode()
    elif kind == "whisper":
        data = json.loads(files["P01_whisper.json"])
        seg = data["segments"][draw(st.integers(0, len(data["segments"]) - 1))]
        seg[draw(st.sampled_from(["start", "end", "text", "speaker"]))] = draw(hostile_scalar)
        files["P01_whisper.json"] = _json_line(data)
    elif kind == "elan":
        text = files["P01_labels.eaf"].decode()
        files["P01_labels.eaf"] = text.replace('TIME_VALUE="2000"', f'TIME_VALUE="{draw(cell_text)}"').encode()
    elif kind in ("persons", "introspection"):
        name = f"{kind}.csv"
        lines = files[name].decode().splitlines()
        extra = draw(st.sampled_from(["P01,abc,x,y", lines[-1], "", ",,,"]))
        files[name] = "\n".join(lines + [extra]).encode()
    else:
        name = draw(st.sampled_from(sorted(files)))
        files[name] = b"\xff\xfe" + files[name] if kind == "bytes" else files[name][:draw(st.integers(0, 40))]
    return files


@given(files=broken_import())
def test_damaged_import_files_give_a_clear_error_or_a_corpus(tmp_path_factory, files, capsys):
    import shutil

    folder = tmp_path_factory.mktemp("imp")
    for name in EXAMPLE.iterdir():
        shutil.copy(name, folder / name.name)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    out = folder / "segments.jsonl"
    code = main(["import", "--config", str(folder / "import.yaml"), "--out", str(out)])
    err = capsys.readouterr().err
    assert code in (0, 2) and "Traceback" not in err, err[-2000:]
    if code == 2:
        assert err.startswith("emoreg: error:") and not out.exists()
    else:
        read_segments(out, DEEP_SHAME)  # what was written is valid


@given(name=st.one_of(st.sampled_from(["tfidf", "majority", "bayesnet"]), hostile_scalar), task=st.one_of(
    st.sampled_from(["deep-shame"]), hostile_value), prompt=hostile_value, seed=hostile_scalar, params=hostile_value)
def test_the_python_api_builds_a_model_or_raises_emoreg_error(name, task, prompt, seed, params):
    """The Python API validates as the command line does: every wrong kind of argument is an
    EmoregError in words, never a raw TypeError or AttributeError."""
    import emoreg

    try:
        model = emoreg.make_model(name, task, prompt=prompt, seed=seed, **(params if isinstance(params, dict) and all(
            isinstance(k, str) and k.isidentifier() for k in params) else {}))
    except EmoregError as exc:
        assert str(exc)
        return
    assert model.name == name and 0 <= model.seed < 2 ** 32


@given(value=hostile_value)
def test_the_python_api_entry_points_refuse_wrong_kinds_in_words(tmp_path_factory, value):
    import emoreg

    out = tmp_path_factory.mktemp("api")
    (out / "file").write_text("x")
    calls = [lambda: emoreg.load_task(value), lambda: emoreg.load_model(value), lambda: emoreg.load_corpus(value),
             lambda: emoreg.report(value, out=out / "r"), lambda: emoreg.evaluate(value, out=out / "e"),
             lambda: emoreg.evaluate("configs/baselines/deep-example-tfidf.yaml", out=out / "file"),
             lambda: emoreg.evaluate("configs/baselines/deep-example-tfidf.yaml", out=out / "e2", overrides=value)]
    for call in calls:
        try:
            call()
        except EmoregError as exc:
            assert str(exc)
    assert (out / "file").read_text() == "x"
