"""The live service: stream an interaction, get the strategy of each moment.

* ``POST /sessions`` opens a session (optional person factors and context);
* ``POST /sessions/{id}/segments`` adds the turns and nonverbal events since the last post and
  answers with the predicted label and the probability of every label; the service keeps the
  session's history and builds the prompt with the model's own template, sources and budget;
* ``GET /sessions/{id}/timeline``, ``POST /sessions/{id}/close``;
* ``POST /classify``: a stateless batch of complete segments (the JSONL format);
* ``GET /health`` (never needs the token), ``GET /ready``; ``GET /`` is the live page: a
  session's strategy over its time, every label's probability, the transcript, the model card.

Model work runs off the event loop in one worker thread; posts that wait at the same time are
predicted together in one batch. Sessions, segments and predictions live in SQLite.
"""

from __future__ import annotations

import asyncio
import hmac
import os
from collections import OrderedDict, defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from ..errors import Problem
from ..models.temporal import Temporal
from ..runs import prediction_row
from ..segments import Event, Nonverbal, Segment, Turn, segment_from_dict
from .guard import BodyGuard
from .store import Store

MAX_BODY_BYTES = 1_000_000
MAX_TEXT = 5_000
MAX_TURNS_PER_POST = 50
MAX_SEGMENTS_PER_SESSION = 5_000
MAX_BATCH = 256
MAX_SESSIONS_IN_MEMORY = 256  # live histories kept in memory; an evicted one is read back from the store


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TurnIn(Strict):
    speaker: str = Field(min_length=1, max_length=100)
    text: str = Field(min_length=1, max_length=MAX_TEXT)
    start_s: float | None = Field(default=None, ge=0)


class EventIn(Strict):
    behaviour: str = Field(min_length=1, max_length=100)
    start_s: float = Field(ge=0)
    end_s: float = Field(ge=0)
    intensity: float | None = None


class SessionIn(Strict):
    context: str | None = Field(default=None, max_length=MAX_TEXT)
    person: dict[str, str | float | int | bool] | None = Field(default=None, max_length=100)


class SegmentIn(Strict):
    turns: list[TurnIn] = Field(default_factory=list, max_length=MAX_TURNS_PER_POST)
    events: list[EventIn] = Field(default_factory=list, max_length=200)
    features: dict[str, float] = Field(default_factory=dict, max_length=200)
    start_s: float | None = Field(default=None, ge=0)
    end_s: float | None = Field(default=None, ge=0)
    introspection: str | None = Field(default=None, max_length=MAX_TEXT)


class ClassifyIn(Strict):
    segments: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BATCH)


class Batcher:
    """Runs ``model.predict_proba`` in one worker thread; requests waiting together form a batch."""

    def __init__(self, model):
        self.model = model
        self.queue: asyncio.Queue = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emoreg-model")
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def predict(self, segments: list[Segment]):
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((segments, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            while not self.queue.empty() and sum(len(s) for s, _ in items) < MAX_BATCH:
                items.append(self.queue.get_nowait())
            batch = [seg for segs, _ in items for seg in segs]
            try:
                proba = await loop.run_in_executor(self.executor, self.model.predict_proba, batch)
            except Exception as exc:  # one bad batch must not stop the service
                for _, future in items:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for segs, future in items:
                if not future.done():
                    future.set_result(proba[start:start + len(segs)])
                start += len(segs)


def _problem_response(problems: list[Problem]) -> HTTPException:
    return HTTPException(422, detail=[{"loc": [p.where, *(p.field.split(".") if p.field else [])], "msg": p.message}
                                      for p in problems])


def create_app(model: Any, db_path: str | Path, token: str | None = None, public_docs: bool = False,
               explain_live: bool = False) -> FastAPI:
    """The service around ``model`` (a loaded model, or the folder of one, loaded at start-up).
    With a token, /docs and /openapi.json are off unless ``public_docs``; without one, they are on
    like every endpoint. With ``explain_live`` every post is explained (occlusion per source) and
    the source that raised the predicted label most is stored and shown on the page."""
    from ..models import load_model

    state: dict[str, Any] = {}
    locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
    # each live session's turns so far, kept as they arrive: a post reads the store only for a
    # session not seen since start-up (or evicted), so its cost does not grow with the session
    histories: OrderedDict[str, list[Turn]] = OrderedDict()

    def history_of(session_id: str) -> list[Turn]:
        if session_id in histories:
            histories.move_to_end(session_id)
        else:
            histories[session_id] = [Turn(t["speaker"], t["text"], t["start_s"])
                                     for t in state["store"].turns(session_id)]
            while len(histories) > MAX_SESSIONS_IN_MEMORY:
                histories.popitem(last=False)
        return histories[session_id]

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loaded = model if hasattr(model, "predict_proba") else await asyncio.to_thread(load_model, model)
        # a model trained with session decoding: posts are filtered live, one step per segment, from
        # the session's previous answer (its filtered posterior, kept in the store); the batcher
        # runs the model underneath
        temporal = loaded if isinstance(loaded, Temporal) else None
        state.update(model=loaded, store=Store(db_path), temporal=temporal,
                     batcher=Batcher(temporal.model_ if temporal else loaded))
        state["batcher"].start()
        yield
        await state["batcher"].stop()

    docs = token is None or public_docs
    app = FastAPI(title="emoreg", version="1", lifespan=lifespan,
                  description="Recognise emotion-regulation strategies in a live interaction.",
                  docs_url="/docs" if docs else None, redoc_url=None, openapi_url="/openapi.json" if docs else None)

    app.add_middleware(BodyGuard, limit=MAX_BODY_BYTES)  # bytes counted as they stream; no NaN, no surrogates
    app.state.session_locks = locks  # one per session posted to; read by the tests (no made-up id gets one)

    def authorised(request: Request) -> None:
        if token is None:
            return
        header = request.headers.get("authorization", "")
        if not hmac.compare_digest(header.encode(), f"Bearer {token}".encode()):
            raise HTTPException(401, detail="missing or wrong API token: send 'Authorization: Bearer <token>'")

    api = APIRouter(dependencies=[Depends(authorised)])  # every endpoint but /health and the page

    def session_or_404(session_id: str) -> dict[str, Any]:
        if len(session_id) > 64 or not session_id.isascii():  # ids are 32 hex digits; %ff never names one
            raise HTTPException(404, detail=f"no session {session_id[:64]!r}")
        found = state["store"].session(session_id)
        if found is None:
            raise HTTPException(404, detail=f"no session {session_id!r}")
        return found

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/ready")
    def ready() -> dict[str, Any]:
        model = state.get("model")
        if model is None:
            raise HTTPException(503, detail="the model is still loading")
        decoding = "none"
        if state.get("temporal") is not None:
            trained = state["temporal"]._param("temporal")
            decoding = "filter" if trained == "filter" else (
                "filter (trained with smooth, which needs the whole session; posts are filtered, /classify smooths)")
        return {"ready": True, "model": model.name, "task": model.task.name, "labels": list(model.labels_),
                "sources": list(model.prompt.sources), "session_decoding": decoding}

    page_html = (resources.files("emoreg.serve") / "page.html").read_text()
    page_headers = {"Content-Security-Policy": content_security_policy(page_html),
                    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse(page_html, headers=page_headers)

    @api.get("/model", response_class=PlainTextResponse)
    def model_card() -> str:
        """The model's MODEL_CARD.md (markdown): labels, data, cross-subject metrics, licence, limits."""
        from ..model_card import CARD

        folder = model if isinstance(model, (str, Path)) else getattr(state["model"], "folder_", None)
        card = Path(folder) / CARD if folder is not None else None
        # a regular file of the model folder only: a link could point anywhere on this machine
        if card is None or card.is_symlink() or not card.is_file():
            raise HTTPException(404, detail="this model has no MODEL_CARD.md; models saved by `emoreg train` have one")
        return card.read_bytes().decode("utf-8", errors="replace")  # a card in another encoding still shows

    @api.post("/sessions", status_code=201)
    def create_session(body: SessionIn) -> dict[str, Any]:
        return state["store"].session(state["store"].create_session(body.context, body.person))

    @api.get("/sessions")
    def list_sessions() -> list[dict[str, Any]]:
        if token is None:
            raise HTTPException(403, detail="listing sessions needs the service to run with an API token "
                                            "(EMOREG_API_TOKEN); without one, open a session by its id")
        return state["store"].sessions()

    @api.get("/sessions/{session_id}")
    def get_session(session_id: str) -> dict[str, Any]:
        return session_or_404(session_id)

    @api.post("/sessions/{session_id}/segments")
    async def add_segment(session_id: str, body: SegmentIn, explain: bool = False) -> dict[str, Any]:
        if body.start_s is not None and body.end_s is not None and body.end_s < body.start_s:
            raise HTTPException(422, detail=[{"loc": ["body", "end_s"], "msg": "end_s is before start_s"}])
        for i, ev in enumerate(body.events):
            if ev.end_s < ev.start_s:
                raise HTTPException(422, detail=[{"loc": ["body", "events", i, "end_s"], "msg": "end_s is before start_s"}])
        session_or_404(session_id)  # an unknown id gets no lock: posts to made-up ids hold no memory
        async with locks[session_id]:  # a session's posts are taken in order
            store: Store = state["store"]
            session = session_or_404(session_id)
            if session["closed"] is not None:
                raise HTTPException(409, detail=f"session {session_id!r} is closed")
            if session["segments"] >= MAX_SEGMENTS_PER_SESSION:
                raise HTTPException(409, detail=f"session {session_id!r} reached {MAX_SEGMENTS_PER_SESSION} segments; "
                                                "open a new session")
            post = body.model_dump()
            history = history_of(session_id) + [Turn(t["speaker"], t["text"], t["start_s"]) for t in post["turns"]]
            segment = Segment(
                segment_id=f"{session_id}-{session['segments']}", subject_id=session_id, session_id=session_id,
                start_s=body.start_s, end_s=body.end_s, context=session["context"],
                transcript=tuple(history) or None,
                nonverbal=Nonverbal(tuple(Event(**e) for e in post["events"]), post["features"])
                if post["events"] or post["features"] else None,
                person=session["person"], introspection=body.introspection)
            proba = (await state["batcher"].predict([segment]))[0]
            if state["temporal"] is not None:
                previous = store.last_proba(session_id)  # the filtered posterior of the session's last segment
                message = np.array([previous[label] for label in state["model"].labels_]) if previous else None
                proba = state["temporal"].step(message, proba)
            row = prediction_row(segment, proba, state["model"].labels_)
            label, answer = row["predicted"], row["proba"]
            why = (await explained([segment], proba[None]))[0] if explain or explain_live else None
            store.add_segment(session_id, session["segments"], post, label, answer,
                              top_source(why, label) if why is not None else None)
            histories[session_id] = history  # only once stored: a failed post leaves no turn behind
        out = {"session_id": session_id, "seq": session["segments"], "label": label, "proba": answer}
        if explain:
            out["explain"] = why
        return out

    @api.get("/sessions/{session_id}/timeline")
    def timeline(session_id: str) -> dict[str, Any]:
        session = session_or_404(session_id)
        return {"session": session, "labels": list(state["model"].labels_),
                "decoded": state["temporal"] is not None,  # labels filtered over the session's segments
                "segments": state["store"].timeline(session_id)}

    @api.post("/sessions/{session_id}/close")
    def close(session_id: str) -> dict[str, Any]:
        session_or_404(session_id)
        state["store"].close(session_id)
        return session_or_404(session_id)

    @api.post("/classify")
    async def classify(body: ClassifyIn, explain: bool = False) -> dict[str, Any]:
        problems: list[Problem] = []
        segments = [segment_from_dict(record, f"segments[{i}]", problems, state["model"].task)
                    for i, record in enumerate(body.segments)]
        if problems:
            raise _problem_response(problems)
        if state["temporal"] is not None:  # complete segments: each session decoded as the model was trained
            proba = await asyncio.get_running_loop().run_in_executor(
                state["batcher"].executor, state["model"].predict_proba, segments)
        else:
            proba = await state["batcher"].predict(segments)
        rows = [prediction_row(s, p, state["model"].labels_) for s, p in zip(segments, proba)]
        answers = [{"segment_id": r["segment_id"], "label": r["predicted"], "proba": r["proba"]} for r in rows]
        if explain:
            for answer, why in zip(answers, await explained(segments, proba)):
                answer["explain"] = why
        return {"predictions": answers}

    async def explained(segments: list[Segment], proba) -> list[dict[str, dict[str, float]]]:
        """Occlusion per source (``emoreg.explain``), in the model's worker thread."""
        from ..explain import occlusion

        return await asyncio.get_running_loop().run_in_executor(
            state["batcher"].executor, occlusion, state["model"], segments, proba)

    app.include_router(api)
    return app


def top_source(explained: dict[str, dict[str, float]], label: str) -> str | None:
    """The source whose removal lowers the predicted label's probability most, e.g. 'utterance +0.41'."""
    best = max(explained.items(), key=lambda item: item[1][label], default=None)
    if best is None or best[1][label] <= 0:
        return None
    return f"{best[0]} {best[1][label]:+.2f}"


def content_security_policy(html: str) -> str:
    """The page may run its own inline script and style (by their sha256) and nothing else: no
    other script, no inline event handler, no plug-in, no frame; it talks only to this service."""
    import base64
    import hashlib
    import re

    def hashes(tag: str) -> str:
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in blocks)

    return (f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; "
            "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def read_token(token_file: str | Path | None) -> str | None:
    """The API token: from ``token_file`` if given, else ``$EMOREG_API_TOKEN``; None: no auth."""
    if token_file is not None:
        text = Path(token_file).read_text().strip()
        if not text:
            raise ValueError(f"token file {token_file} is empty")
        return text
    return os.environ.get("EMOREG_API_TOKEN") or None
