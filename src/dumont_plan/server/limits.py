"""Request limits and the last line of defence of every answer.

`RequestGuard` (plain ASGI, inside Starlette's error middleware):
- a body over `ServerSettings.max_body_bytes` is a 413 in the error envelope, told by its
  Content-Length or found while reading it (never buffered past the cap); a streamed upload
  (`STREAMED_SUFFIXES`: a fine-tune dataset) is not buffered here at all: its route writes it
  to disk as it arrives and enforces its own cap (`max_stream_bytes`; a Content-Length over
  it is a 413 here at once);
- a JSON body with NaN or an infinity (`NaN`, `1e999`) or a lone surrogate (`"\\ud800"`) is a
  422: neither is JSON a client can mean, and the database cannot store a lone surrogate;
- an exception of a route becomes the 500 envelope here, so the connection stays open
  (past Starlette's error middleware, uvicorn closes a kept-alive connection after a 500).
"""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dumont_plan.errors import NotJsonValue

log = logging.getLogger("dumont_plan.server")

# The integers SQLite (and most clients) hold: the upper bound of every integer parameter.
MAX_INT = 2**63 - 1
# The longest string field of a request body (a script); ids and names have their own limits.
TEXT_MAX = 64 * 1024
# The most entries of a list field of a request body.
LIST_MAX = 256
# POST routes whose body the route streams to disk itself (multipart uploads).
STREAMED_SUFFIXES = ("/finetune/jobs/upload-dataset", "/jobs/workdirs")
# Room for the multipart framing around a streamed file.
STREAM_OVERHEAD_BYTES = 64 * 1024


def _reject_constant(name: str) -> Any:
    raise NotJsonValue(f"{name} is not a JSON number; send a finite number")


def _check(value: Any) -> None:
    """Raise NotJsonValue for a non-finite number or a string with a lone surrogate, anywhere."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise NotJsonValue("a number is too large; send a finite number")
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise NotJsonValue(
                    "a string holds a lone surrogate (\\ud800-\\udfff); send valid Unicode"
                ) from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def json_problem(body: bytes) -> str | None:
    """Why a JSON body must be refused though it parses, or None (also for malformed JSON:
    the route's own validation answers that)."""
    try:
        _check(json.loads(body, parse_constant=_reject_constant))
    except NotJsonValue as exc:
        return str(exc)
    except RecursionError:
        return "the JSON is nested too deeply"
    except ValueError:
        return None
    return None


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers") or []:
        if name == b"content-type":
            return b"json" in value.lower()
    return True  # FastAPI reads a body without a content type as JSON


async def _answer(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


# The paths whose bodies are state documents (`max_state_bytes`, not `max_body_bytes`).
STATE_PATH = re.compile(r"^/api(/v1)?/state/[^/]+$")


class RequestGuard:
    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        max_state_bytes: int = 0,
        max_stream_bytes: int = 0,
        exception_text: bool = False,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_state_bytes = max(max_state_bytes, max_body_bytes)
        self.max_stream_bytes = max_stream_bytes
        self.exception_text = exception_text  # a 500's details: the text (real platform)

    @staticmethod
    def too_large(limit: int) -> dict[str, Any]:
        return {"error": f"Request body too large: the limit is {limit} bytes"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        if STATE_PATH.match(scope.get("path", "")):
            limit = self.max_state_bytes
        streamed = scope.get("method") == "POST" and str(scope.get("path", "")).endswith(
            STREAMED_SUFFIXES
        )
        if streamed:
            limit = self.max_stream_bytes + STREAM_OVERHEAD_BYTES
        for name, value in scope.get("headers") or []:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await _answer(send, 413, self.too_large(limit))
                return
        if streamed:
            await self._guarded(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left: nothing to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _answer(send, 413, self.too_large(limit))
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        if body and _is_json(scope):
            problem = json_problem(body)
            if problem is not None:
                detail = {"type": "json_invalid", "loc": ["body"], "msg": problem}
                await _answer(send, 422, {"error": "Validation error", "details": [detail]})
                return
        await self._guarded(scope, _replay(body, receive), send)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                details = str(exc) if self.exception_text else type(exc).__name__
                body = {"error": "Internal server error", "details": details}
                await _answer(send, 500, body)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body already read, then the client's own messages (e.g. its disconnect)."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
