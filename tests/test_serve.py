"""The live service over real HTTP: a uvicorn server started by the test on a free loopback port,
and the timeline page in a real headless Chromium."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from emoreg.cli import main
from emoreg.serve import free_port

OUTPUT = Path(__file__).resolve().parent / "output"




class Server:
    def __init__(self, model_dir: Path, db: Path, token: str | None = None, args: tuple = ()):
        self.model_dir, self.db, self.token, self.args = model_dir, db, token, args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None

    def start(self) -> "Server":
        env = dict(os.environ)
        env.pop("EMOREG_API_TOKEN", None)
        if self.token:
            env["EMOREG_API_TOKEN"] = self.token
        self.process = subprocess.Popen(
            [sys.executable, "-m", "emoreg", "serve", str(self.model_dir), "--port", str(self.port), "--db", str(self.db),
             *self.args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.process.stdout.read()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError("server did not start within 60 s")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)

    def client(self, token: str | None = "same") -> httpx.Client:
        token = self.token if token == "same" else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    config = Path(__file__).resolve().parents[1] / "configs" / "baselines" / "deep-example-tfidf.yaml"
    assert main(["train", str(config), "--out", str(folder / "model")]) == 0
    return folder / "model"


@pytest.fixture
def server(model_dir, tmp_path):
    s = Server(model_dir, tmp_path / "sessions.sqlite").start()
    yield s
    s.stop()


TURNS = [{"speaker": "Interviewer", "text": "Your test result was below the average."},
         {"speaker": "Interviewee", "text": "Ha, well, I guess I was saving my energy for the real work!"}]


def test_stream_timeline_restart_and_continue(server):
    with server.client() as c:
        assert c.get("/ready").json()["labels"][0] == "Withdrawal"
        created = c.post("/sessions", json={"context": "A job interview.", "person": {"age": 31}})
        assert created.status_code == 201
        sid = created.json()["session_id"]
        first = c.post(f"/sessions/{sid}/segments", json={"turns": TURNS, "events": [
            {"behaviour": "laugh", "start_s": 1.0, "end_s": 2.2, "intensity": 0.8}], "start_s": 0.0, "end_s": 3.0})
        assert first.status_code == 200, first.text
        body = first.json()
        assert body["seq"] == 0 and body["label"] in body["proba"]
        assert abs(sum(body["proba"].values()) - 1) < 1e-6
        second = c.post(f"/sessions/{sid}/segments", json={"turns": [{"speaker": "Interviewee", "text": "Sorry."}]})
        assert second.json()["seq"] == 1
        timeline = c.get(f"/sessions/{sid}/timeline").json()
        assert [s["seq"] for s in timeline["segments"]] == [0, 1]
        assert timeline["session"]["person"] == {"age": 31}
    server.stop()
    server.start()  # a restart loses nothing; the session goes on
    with server.client() as c:
        assert [s["label"] for s in c.get(f"/sessions/{sid}/timeline").json()["segments"]] == \
            [body["label"], second.json()["label"]]
        third = c.post(f"/sessions/{sid}/segments", json={"turns": [{"speaker": "Interviewer", "text": "Go on."}]})
        assert third.json()["seq"] == 2
        assert c.post(f"/sessions/{sid}/close").json()["closed"] is not None
        closed = c.post(f"/sessions/{sid}/segments", json={"turns": TURNS})
        assert closed.status_code == 409 and "is closed" in closed.json()["detail"]


def test_the_service_builds_the_prompt_from_the_whole_history(server, model_dir):
    """The prediction for a post equals the saved model's prediction for the same segment built by hand."""
    from emoreg.models import load_model
    from emoreg.segments import Nonverbal, Segment, Turn

    model = load_model(model_dir)
    with server.client() as c:
        sid = c.post("/sessions", json={"context": "A job interview."}).json()["session_id"]
        c.post(f"/sessions/{sid}/segments", json={"turns": TURNS[:1]})
        answer = c.post(f"/sessions/{sid}/segments", json={"turns": TURNS[1:], "features": {"speech_rate_wps": 2.9}}).json()
    segment = Segment("x", sid, sid, context="A job interview.", transcript=tuple(Turn(t["speaker"], t["text"]) for t in TURNS),
                      nonverbal=Nonverbal(features={"speech_rate_wps": 2.9}))
    expected = model.predict_proba([segment])[0]
    assert [answer["proba"][label] for label in model.labels_] == pytest.approx(expected.tolist())


def test_bad_inputs_get_4xx_with_the_field(server):
    with server.client() as c:
        sid = c.post("/sessions", json={}).json()["session_id"]
        cases = [
            (f"/sessions/{sid}/segments", {"turns": [{"speaker": "A", "text": ""}]}, 422, ["body", "turns", 0, "text"]),
            (f"/sessions/{sid}/segments", {"turns": [{"speaker": "A", "text": "x" * 5001}]}, 422, ["body", "turns", 0, "text"]),
            (f"/sessions/{sid}/segments", {"turnz": []}, 422, ["body", "turnz"]),
            (f"/sessions/{sid}/segments", {"events": [{"behaviour": "smile", "start_s": 2, "end_s": 1}]}, 422,
             ["body", "events", 0, "end_s"]),
            (f"/sessions/{sid}/segments", {"features": {"au12": "high"}}, 422, ["body", "features", "au12"]),
            ("/sessions", {"person": {"age": [1, 2]}}, 422, ["body", "person", "age"]),
            ("/classify", {"segments": [{"segment_id": "a", "subject_id": "s", "session_id": "s", "label": "Joy"}]}, 422,
             ["segments[0]", "label"]),
        ]
        for path, payload, status, loc in cases:
            r = c.post(path, json=payload)
            assert r.status_code == status, (path, payload, r.text)
            assert any(d["loc"][:len(loc)] == loc for d in r.json()["detail"]), r.json()
        missing = c.post("/sessions/nope/segments", json={"turns": TURNS})
        assert missing.status_code == 404 and "no session 'nope'" in missing.json()["detail"]
        big = c.post(f"/sessions/{sid}/segments", content=b"{" + b" " * 1_000_001 + b"}",
                     headers={"content-type": "application/json"})
        assert big.status_code == 413
        ok = c.post("/classify", json={"segments": [{"segment_id": "a", "subject_id": "s", "session_id": "s",
                                                     "transcript": TURNS}]})
        assert ok.status_code == 200 and ok.json()["predictions"][0]["segment_id"] == "a"
        assert c.get("/sessions").status_code == 403  # no token: sessions are not listed
        assert c.get("/docs").status_code == 200  # no token: the docs are as public as the API


def test_hostile_bodies_get_422_or_413_naming_the_place_and_store_nothing(server):
    """Counted as they stream (chunked bodies too); non-finite numbers, lone surrogates, huge
    integers and deep nesting are refused before any endpoint, and nothing reaches the store."""
    with server.client() as c:
        sid = c.post("/sessions", json={}).json()["session_id"]
        url = f"/sessions/{sid}/segments"

        def chunks(total, size=65_536):
            yield b'{"turns": [{"speaker": "A", "text": "'
            for _ in range(total // size):
                yield b"x" * size
            yield b'"}]}'

        for total in (2_000_000, 20_000_000):
            r = c.post(url, content=chunks(total), headers={"content-type": "application/json"})
            assert r.status_code == 413 and "over 1000000 bytes" in r.json()["detail"], r.text
        raw = [
            (b'{"start_s": NaN}', ["body", "start_s"], "NaN is not a number"),
            (b'{"start_s": 1e999}', ["body", "start_s"], "infinite number"),
            (b'{"features": {"au12": Infinity}}', ["body", "features", "au12"], "infinite number"),
            (b'{"events": [{"behaviour": "smile", "start_s": 0, "end_s": 1, "intensity": -Infinity}]}',
             ["body", "events", 0, "intensity"], "infinite number"),
            (rb'{"turns": [{"speaker": "A", "text": "hi \ud800"}]}', ["body", "turns", 0, "text"], "lone UTF-16 surrogate"),
            (b'{"start_s": ' + b"9" * 400 + b"}", ["body", "start_s"], "integer of 400 digits"),
            (b'{"turns": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", ["body"], "nested more than 32 levels"),
            (b'{"turns": [{"speaker": "A", "text": "caf\xe9"}]}', ["body"], "not UTF-8"),  # Latin-1, not UTF-8
        ]
        for body, loc, message in raw:
            r = c.post(url, content=body, headers={"content-type": "application/json"})
            assert r.status_code == 422, (body[:60], r.status_code, r.text[:300])
            detail = r.json()["detail"][0]
            assert detail["loc"] == loc and message in detail["msg"], (body[:60], detail)
        person = c.post("/sessions", content=b'{"person": {"age": NaN}}', headers={"content-type": "application/json"})
        assert person.status_code == 422 and person.json()["detail"][0]["loc"] == ["body", "person", "age"]
        batch = c.post("/classify", content=rb'{"segments": [{"segment_id": "\udc00", "subject_id": "s", '
                                            b'"session_id": "s"}]}', headers={"content-type": "application/json"})
        assert batch.status_code == 422 and batch.json()["detail"][0]["loc"] == ["body", "segments", 0, "segment_id"]
        assert c.get("/sessions/%ff/timeline").status_code == 404
        assert c.get(f"/sessions/{sid}/timeline").json()["segments"] == []  # nothing was stored
        assert c.post(url, json={"turns": TURNS}).status_code == 200  # and the session still works


def test_auth_on(model_dir, tmp_path):
    server = Server(model_dir, tmp_path / "s.sqlite", token="s3cret").start()
    try:
        with server.client(token=None) as anonymous:
            assert anonymous.get("/health").status_code == 200
            denied = anonymous.post("/sessions", json={})
            assert denied.status_code == 401 and "API token" in denied.json()["detail"]
            assert anonymous.get("/ready").status_code == 401
        with server.client(token="wrong") as wrong:
            assert wrong.post("/sessions", json={}).status_code == 401
        with server.client() as c:
            sid = c.post("/sessions", json={}).json()["session_id"]
            assert [s["session_id"] for s in c.get("/sessions").json()] == [sid]
            assert c.get("/docs").status_code == 404 and c.get("/openapi.json").status_code == 404  # off with a token
    finally:
        server.stop()
    public = Server(model_dir, tmp_path / "s.sqlite", token="s3cret", args=("--public-docs",)).start()
    try:
        with public.client(token=None) as anonymous:
            assert anonymous.get("/docs").status_code == 200
            assert "/sessions" in anonymous.get("/openapi.json").json()["paths"]
            assert anonymous.post("/sessions", json={}).status_code == 401  # the API itself still needs it
    finally:
        public.stop()


def test_serve_refuses_a_db_it_cannot_use(model_dir, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a database " * 100)
    for db, message in [(tmp_path, "is a folder"), (tmp_path / "notes.txt", "is not an SQLite database")]:
        assert main(["serve", str(model_dir), "--db", str(db)]) == 2
        assert message in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "not a database " * 100  # untouched


def chromium_available() -> bool:
    return bool(shutil.which("chromium") and shutil.which("chromedriver"))


needs_chromium = pytest.mark.skipif(not chromium_available() and os.environ.get("CI", "").lower() != "true",
                                    reason="needs Debian's chromium and chromium-driver (make test installs them "
                                           "where it can)")


def headless_chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1000,500"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


HOSTILE = ['<img src=x onerror="window.pwned=1">', 'Rest</span><script>window.pwned=2</script>']


@pytest.fixture(scope="module")
def hostile_model_dir(tmp_path_factory):
    """A model whose label names are markup that would run script if the page wrote it as HTML."""
    import json

    import yaml

    folder = tmp_path_factory.mktemp("hostile")
    example = Path(__file__).resolve().parents[1] / "src" / "emoreg" / "data" / "deep_example.jsonl"
    rows = [json.loads(line) for line in example.read_text().splitlines() if line.strip()]
    for i, row in enumerate(rows):
        row["label"] = HOSTILE[i % 2]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "task.yaml").write_text(yaml.safe_dump({"name": "hostile", "labels": [
        {"name": label, "definition": "A label whose name is markup."} for label in HOSTILE]}))
    (folder / "config.yaml").write_text(yaml.safe_dump({
        "corpus": str(folder / "corpus.jsonl"), "task": str(folder / "task.yaml"), "model": "tfidf",
        "params": {"text": "prompt", "min_df": 1}, "split": {"kind": "loso"}, "seed": 0}))
    assert main(["train", str(folder / "config.yaml"), "--out", str(folder / "model")]) == 0
    return folder / "model"


@needs_chromium
def test_label_names_are_shown_as_text_never_run_as_markup(hostile_model_dir, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server = Server(hostile_model_dir, tmp_path / "s.sqlite", args=("--explain",)).start()
    try:
        page = httpx.get(server.url + "/")
        policy = page.headers["content-security-policy"]
        assert "script-src 'sha256-" in policy and "unsafe-inline" not in policy and "default-src 'none'" in policy
        with server.client() as c:
            sid = c.post("/sessions", json={}).json()["session_id"]
            for _ in range(3):
                assert c.post(f"/sessions/{sid}/segments", json={"turns": TURNS}).status_code == 200
        driver = headless_chromium()
        try:
            driver.get(f"{server.url}/?session={sid}")
            WebDriverWait(driver, 20).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#chart .segment")) == 3)
            legend = driver.find_element(By.ID, "legend")
            assert [s.text for s in legend.find_elements(By.TAG_NAME, "span")] == HOSTILE  # literal text
            assert driver.find_elements(By.CSS_SELECTOR, "body img") == []
            assert len(driver.find_elements(By.TAG_NAME, "script")) == 1  # the page's own
            assert driver.execute_script("return window.pwned === undefined")
            labels = {s.get_attribute("data-label") for s in driver.find_elements(By.CSS_SELECTOR, "#chart .segment")}
            assert labels <= set(HOSTILE)
            details = driver.find_element(By.ID, "details").text
            assert "Moved most by: " in details  # --explain: the source that raised the shown label most
            assert any(label in details for label in HOSTILE)  # shown as text in the details too
        finally:
            driver.quit()
    finally:
        server.stop()


LIVE = [("Interviewer", "Tell me about a time you failed."), ("Interviewee", "I guess I was simply not good enough."),
        ("Interviewer", "Your test result was below the average."),
        ("Interviewee", "Ha, well, I was saving my energy for the real work!"),
        ("Interviewer", "Why should we hire you?"), ("Interviewee", "Your questions are unfair.")]


@needs_chromium
def test_the_live_page_shows_time_the_transcript_and_how_sure_each_call_is(server):
    """What a person watching sees: a time axis in seconds, the strategy band whose colour strength
    follows the probability, the stacked probabilities, the transcript with the current turn
    highlighted, and the details of a segment picked with the keyboard."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    with server.client() as c:
        sid = c.post("/sessions", json={"context": "A job interview."}).json()["session_id"]
        for i, (speaker, text) in enumerate(LIVE):
            assert c.post(f"/sessions/{sid}/segments", json={"start_s": 4.0 * i, "end_s": 4.0 * i + 4, "turns": [
                {"speaker": speaker, "text": text, "start_s": 4.0 * i}]}).status_code == 200
    timeline = httpx.get(f"{server.url}/sessions/{sid}/timeline").json()
    driver = headless_chromium()
    try:
        driver.get(f"{server.url}/?session={sid}")
        WebDriverWait(driver, 20).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#chart .segment")) == 6)
        ticks = [t.text for t in driver.find_elements(By.CSS_SELECTOR, "#chart .tick")]
        assert ticks == ["0 s", "5 s", "10 s", "15 s", "20 s"]  # 0-24 s of the session
        assert driver.find_element(By.CSS_SELECTOR, "#chart .axis-title").text == "time in the session (seconds)"
        # uncertain calls look uncertain: colour strength in the order of the shown label's probability
        segments = driver.find_elements(By.CSS_SELECTOR, "#chart .segment")
        sure = [s["proba"][s["label"]] for s in timeline["segments"]]
        opacity = [float(s.get_attribute("fill-opacity")) for s in segments]
        assert opacity.index(min(opacity)) == sure.index(min(sure))
        assert opacity.index(max(opacity)) == sure.index(max(sure)) and min(opacity) < max(opacity)
        assert [s.get_attribute("data-label") for s in segments] == [s["label"] for s in timeline["segments"]]
        assert len(driver.find_elements(By.CSS_SELECTOR, "#chart .share")) >= 6  # every label's share, stacked
        # the newest segment is the current moment: its turn highlighted in the transcript
        current = driver.find_elements(By.CSS_SELECTOR, "#turns li.current")
        assert [li.text for li in current] == ["20.0 s Interviewee: Your questions are unfair."]
        # keyboard: the first segment focused, arrow right: the second one's turn and probabilities shown
        driver.execute_script("arguments[0].focus()", segments[0])
        segments[0].send_keys(Keys.ARROW_RIGHT)
        WebDriverWait(driver, 5).until(lambda d: "Segment 1 (4.0-8.0 s)" in d.find_element(By.ID, "details").text)
        current = driver.find_elements(By.CSS_SELECTOR, "#turns li.current")
        assert [li.text for li in current] == ["4.0 s Interviewee: I guess I was simply not good enough."]
        details = driver.find_element(By.ID, "details").text
        second = timeline["segments"][1]
        assert f"{second['label']} {100 * second['proba'][second['label']]:.1f}%" in details  # every label's row
        assert all(label in details for label in timeline["labels"])
        assert driver.find_element(By.ID, "status").text.startswith("6 segments")
        OUTPUT.mkdir(exist_ok=True)  # the picture in docs/service.md
        driver.set_window_size(1280, 880)
        driver.execute_script("window.scrollTo(0, 0)")
        driver.save_screenshot(str(OUTPUT / "live-page.png"))
        assert (OUTPUT / "live-page.png").stat().st_size > 1000
    finally:
        driver.quit()


@needs_chromium
def test_a_service_with_a_token_asks_for_it_in_words_then_lists_the_sessions(model_dir, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server = Server(model_dir, tmp_path / "s.sqlite", token="s3cret-token").start()
    try:
        with server.client() as c:
            sid = c.post("/sessions", json={}).json()["session_id"]
            c.post(f"/sessions/{sid}/segments", json={"turns": TURNS})
        driver = headless_chromium()
        try:
            driver.get(server.url + "/")
            login = driver.find_element(By.ID, "login")
            WebDriverWait(driver, 20).until(lambda d: login.is_displayed())
            assert "needs the API token given to you" in login.text
            assert "401" not in driver.find_element(By.TAG_NAME, "body").text  # no error code for a person to decode
            driver.find_element(By.ID, "token").send_keys("s3cret-token")
            driver.find_element(By.ID, "token-button").click()
            WebDriverWait(driver, 20).until(lambda d: sid in [o.get_attribute("value") for o in
                                                             d.find_elements(By.CSS_SELECTOR, "#session-list option")])
            from selenium.webdriver.support.ui import Select

            Select(driver.find_element(By.ID, "session-list")).select_by_value(sid)
            WebDriverWait(driver, 20).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#chart .segment")) == 1)
            driver.find_element(By.ID, "card-button").click()
            WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "card").is_displayed())
            assert "Not a diagnosis" in driver.find_element(By.ID, "card-text").text
        finally:
            driver.quit()
    finally:
        server.stop()


def test_posts_to_made_up_or_huge_session_ids_hold_no_memory(model_dir, tmp_path):
    """A post to a session that does not exist is a 404 before anything is kept for it (the
    per-session lock was created first and never freed: ~8 kB a made-up id), and a huge id is
    not echoed back whole."""
    from fastapi.testclient import TestClient

    from emoreg.models import load_model
    from emoreg.serve.app import create_app

    app = create_app(load_model(model_dir), tmp_path / "s.sqlite")
    with TestClient(app) as client:
        for i in range(200):
            assert client.post(f"/sessions/{i:032x}/segments", json={"turns": TURNS}).status_code == 404
        huge = client.post("/sessions/" + "a" * 10_000 + "/segments", json={"turns": TURNS})
        assert huge.status_code == 404 and len(huge.json()["detail"]) < 100
        assert len(app.state.session_locks) == 0
        sid = client.post("/sessions", json={}).json()["session_id"]
        assert client.post(f"/sessions/{sid}/segments", json={"turns": TURNS}).status_code == 200
        assert list(app.state.session_locks) == [sid]


def test_play_replays_a_recorded_session_into_the_service_paced_by_its_times(server, tmp_path):
    """`emoreg play`: every segment of a recorded session one post, turns only once each, at the
    pace of the segments' start times divided by --speed; the session closed at the end."""
    from emoreg.corpora import load_corpus
    from emoreg.serve.play import Client, play

    segments = [s for s in load_corpus("deep-example").segments if s.session_id == "P01-interview"]
    waits, said = [], []
    started = play(segments, Client(server.url), speed=4.0, sleep=waits.append, say=said.append)
    live = started["P01-interview"]
    timeline = httpx.get(f"{server.url}/sessions/{live}/timeline").json()
    assert len(timeline["segments"]) == len(segments) and timeline["session"]["closed"] is not None
    ordered = sorted(segments, key=lambda s: s.start_s)
    assert [s["start_s"] for s in timeline["segments"]] == [s.start_s for s in ordered]
    assert waits == [pytest.approx((b.start_s - a.start_s) / 4) for a, b in zip(ordered, ordered[1:])]
    posted = [t["text"] for s in timeline["segments"] for t in s["turns"]]
    assert posted == [t.text for t in ordered[-1].transcript]  # the whole transcript, each turn once
    assert f"?session={live}" in said[0]
    assert main(["play", "deep-example", "--url", server.url, "--session", "nobody"]) == 2


def test_play_says_what_to_do_when_the_service_is_not_there_or_wants_a_token(model_dir, tmp_path, capsys):
    assert main(["play", "deep-example", "--url", f"http://127.0.0.1:{free_port()}", "--speed", "1000"]) == 2
    assert "cannot reach the service" in capsys.readouterr().err
    server = Server(model_dir, tmp_path / "s.sqlite", token="t0ken").start()
    try:
        assert main(["play", "deep-example", "--url", server.url, "--speed", "1000"]) == 2
        assert "answered 401 (give the service's token with --token-file)" in capsys.readouterr().err
        (tmp_path / "token").write_text("t0ken\n")
        assert main(["play", "deep-example", "--url", server.url, "--speed", "1e6", "--session", "P02-interview",
                     "--token-file", str(tmp_path / "token")]) == 0
    finally:
        server.stop()
