"""The contract's error envelope.

`{"error": …}` for every error; 422 is `{"error":"Validation error","details":[…]}`.
"""

from __future__ import annotations

import logging
import math
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("dumont_plan.server")


def _text(value: str) -> str:
    """`value` encodable as UTF-8 (a lone surrogate becomes `?`)."""
    return value.encode("utf-8", "replace").decode("utf-8")


def _jsonable(value: Any) -> Any:
    """Strict JSON: NaN and infinities as text, strings without lone surrogates."""
    if isinstance(value, dict):
        return {_text(str(k)): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, int | float | bool):
        return value
    return _text(str(value))


SENSITIVE_FIELDS = frozenset({"password", "hf_token", "token", "secret", "webhook_secret"})
# A string input longer than this is not echoed back (it may be a pasted secret or a script).
ECHO_MAX_CHARS = 200
_OMIT = object()


def _echoed_input(loc: list[Any], value: Any) -> Any:
    """What a 422 may show of the input: a field's scalar value; never a sensitive field, a
    whole body (a text/plain body is raw user input), an object, a list or a long text."""
    if any(str(part) in SENSITIVE_FIELDS for part in loc):
        return "(sensitive)"
    if len(loc) < 2:
        return _OMIT
    if value is None or isinstance(value, bool | int | float):
        return _jsonable(value)
    if isinstance(value, str) and _has_password(value):
        return "(sensitive)"  # a URL's user:password@ (a dataset URL, a webhook)
    if isinstance(value, str) and len(value) <= ECHO_MAX_CHARS:
        return _text(value)
    return _OMIT


def _has_password(value: str) -> bool:
    if "://" not in value or "@" not in value:
        return False
    try:
        return urlsplit(value.strip()).password is not None
    except ValueError:
        return True  # unparseable with an @ after a scheme: not shown


def validation_details(errors: Any) -> list[dict[str, Any]]:
    """Pydantic errors as strict JSON, with only a field's own scalar input echoed (see
    `_echoed_input`)."""
    details = []
    for err in errors:
        raw = dict(err)
        item = {k: _jsonable(v) for k, v in raw.items() if k not in ("url", "input")}
        if "input" in raw:
            shown = _echoed_input(list(raw.get("loc") or []), raw["input"])
            if shown is not _OMIT:
                item["input"] = shown
        details.append(item)
    return details


def install_error_handlers(app: FastAPI, *, exception_text: bool = False) -> None:
    """The contract's envelopes; `exception_text`: a 500's `details` is the exception's text
    (the real platform's way; else its class name only)."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            {"error": "Validation error", "details": validation_details(exc.errors())},
            status_code=422,
        )

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        details = str(exc) if exception_text else type(exc).__name__
        return JSONResponse({"error": "Internal server error", "details": details}, status_code=500)
