"""``emoreg play``: a recorded session posted into a running service as if it happened now, for
demonstrations and for trying the live page: each session of a segments file becomes a live
session, and each segment one post (the turns new since the segment before, its behaviour events
and features, its times), paced by the segments' start times divided by ``speed``."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import EmoregError
from ..segments import Segment

UNTIMED_GAP_S = 2.0  # between posts of segments without start times, at speed 1


def posts(segments: Sequence[Segment]) -> list[dict[str, Any]]:
    """The posts that replay one session's segments (in order): what each segment adds to the one
    before it, in the shape ``POST /sessions/{id}/segments`` takes."""
    out, seen = [], 0
    for s in segments:
        turns = list(s.transcript or ())
        if len(turns) < seen:  # a segment's transcript is the session's so far: it only grows
            raise EmoregError(f"segment {s.segment_id}: its transcript is shorter than the segment's before it; "
                              "a recorded session's transcripts grow turn by turn")
        new, seen = turns[seen:], len(turns)
        nonverbal = s.nonverbal
        out.append({
            "turns": [{"speaker": t.speaker, "text": t.text, "start_s": t.start_s} for t in new],
            "events": [{"behaviour": e.behaviour, "start_s": e.start_s, "end_s": e.end_s, "intensity": e.intensity}
                       for e in (nonverbal.events if nonverbal else ())],
            "features": {k: float(v) for k, v in nonverbal.features.items()} if nonverbal else {},
            "start_s": s.start_s, "end_s": s.end_s, "introspection": s.introspection})
    return out


class Client:
    """JSON over HTTP to the service (the standard library's client: no dependency to install)."""

    def __init__(self, url: str, token: str | None = None):
        self.url, self.token = url.rstrip("/"), token

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"} |
                                         ({"Authorization": f"Bearer {self.token}"} if self.token else {}))
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            hint = " (give the service's token with --token-file)" if exc.code == 401 else ""
            raise EmoregError(f"{self.url}{path}: the service answered {exc.code}{hint}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise EmoregError(f"cannot reach the service at {self.url}: {getattr(exc, 'reason', exc)}; start it with "
                              "`emoreg serve MODEL_DIR` and give its address with --url") from None


def play(segments: Sequence[Segment], client: Client, speed: float = 1.0,
         sleep: Callable[[float], None] = time.sleep, say: Callable[[str], None] = print) -> dict[str, str]:
    """Replay every session of ``segments`` into the service, one after another; the live session
    id of each recorded session id."""
    if not speed > 0:
        raise EmoregError(f"--speed must be above 0 (1: real time, 10: ten times faster), found {speed}")
    sessions: dict[str, list[Segment]] = {}
    for s in segments:
        sessions.setdefault(s.session_id, []).append(s)
    started = {}
    for recorded, part in sessions.items():
        part = sorted(part, key=lambda s: (s.start_s is None, s.start_s or 0.0))
        first = part[0]
        person = {k: v for k, v in (first.person or {}).items() if v is not None} or None
        live = client.post("/sessions", {"context": first.context, "person": person})["session_id"]
        started[recorded] = live
        say(f"{recorded}: {len(part)} segments into live session {live}; watch it at {client.url}/?session={live}")
        previous = None
        for segment, body in zip(part, posts(part)):
            if previous is not None:
                gap = (segment.start_s - previous.start_s) if segment.start_s is not None and \
                    previous.start_s is not None else UNTIMED_GAP_S
                sleep(max(gap, 0.0) / speed)
            answer = client.post(f"/sessions/{live}/segments", body)
            say(f"  {segment.segment_id}: {answer['label']} ({answer['proba'][answer['label']]:.0%})")
            previous = segment
        client.post(f"/sessions/{live}/close", {})
    return started
