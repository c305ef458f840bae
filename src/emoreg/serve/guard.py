"""What every request body must pass before an endpoint sees it.

* At most ``limit`` bytes, counted as they arrive, whether the client sent a Content-Length or
  streamed the body in chunks (``Transfer-Encoding: chunked``): past the limit the service answers
  413 and reads no further.
* A JSON body must be valid UTF-8 JSON without non-finite numbers (``NaN``, ``Infinity``, or a
  literal such as ``1e999`` that overflows a float), integers of more than 300 digits, lone UTF-16
  surrogates (``"\\ud800"``) in a string or key, or nesting deeper than ``MAX_DEPTH``. Each gives
  422 with the place (``loc``, as FastAPI's validation errors have it) and what to send instead;
  nothing is stored. SQLite and the JSON answers could hold none of them.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 32
MAX_INT_DIGITS = 300


class BadBody(ValueError):
    def __init__(self, loc: list, msg: str):
        super().__init__(msg)
        self.loc, self.msg = loc, msg


class _LongInt:
    """An integer literal of too many digits, kept as text until its place is known."""

    def __init__(self, digits: int):
        self.digits = digits


def _parse_int(text: str):
    digits = len(text.lstrip("-"))
    return _LongInt(digits) if digits > MAX_INT_DIGITS else int(text)


def _walk(value: Any, loc: list) -> None:
    if len(loc) > MAX_DEPTH:
        raise BadBody(loc[:MAX_DEPTH + 1], f"the body is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, float) and math.isnan(value):
        raise BadBody(loc, "NaN is not a number; send a finite number, or leave the field out")
    if isinstance(value, float) and not math.isfinite(value):
        raise BadBody(loc, "an infinite number (Infinity, or a literal such as 1e999 too large for a float); "
                           "send a finite number")
    if isinstance(value, _LongInt):
        raise BadBody(loc, f"an integer of {value.digits} digits; at most {MAX_INT_DIGITS} are accepted")
    if isinstance(value, str):
        _check_text(value, loc)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, loc + [key])
            _walk(item, loc + [key])
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _walk(item, loc + [i])


def _check_text(text: str, loc: list) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        where = [repr(k) if isinstance(k, str) and _has_surrogate(k) else k for k in loc]
        raise BadBody(where, f"the text holds a lone UTF-16 surrogate ({text[exc.start]!r} at character "
                             f"{exc.start}), which is not a character; send valid Unicode") from None


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= c <= "\udfff" for c in text)


def check_json(body: bytes) -> None:
    """Raise ``BadBody`` for a body the service must refuse (see the module docstring)."""
    if not body.strip():
        return  # FastAPI answers an empty body itself
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadBody(["body"], f"the body is not UTF-8 (byte {exc.start}); send JSON encoded as UTF-8") from None
    try:
        value = json.loads(text, parse_int=_parse_int)
    except json.JSONDecodeError:
        return  # FastAPI answers malformed JSON with its own 422
    except RecursionError:  # nested deeper than the parser's stack; shallower excess is _walk's to refuse
        raise BadBody(["body"], f"the body is nested more than {MAX_DEPTH} levels deep") from None
    _walk(value, ["body"])  # also bounds the nesting at MAX_DEPTH


class BodyGuard:
    """ASGI middleware: the byte limit while the body streams in, then ``check_json``."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from fastapi.responses import JSONResponse

        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and not length.isdigit():
            return await JSONResponse({"detail": "the Content-Length header is not a number"}, 400)(scope, receive, send)
        too_big = JSONResponse({"detail": f"request body over {self.limit} bytes"}, 413)
        if length is not None and int(length) > self.limit:
            return await too_big(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return await too_big(scope, receive, send)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if b"json" in headers.get(b"content-type", b"application/json"):
            try:
                check_json(body)
            except BadBody as exc:
                return await JSONResponse({"detail": [{"loc": exc.loc, "msg": exc.msg}]}, 422)(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)
