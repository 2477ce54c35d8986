"""The contract's error envelope.

`{"error": …}` for every error; 422 is `{"error":"Validation error","details":[…]}`.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("dumont_plan.server")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


SENSITIVE_FIELDS = frozenset({"password", "hf_token", "token", "secret"})


def validation_details(errors: Any) -> list[dict[str, Any]]:
    """Pydantic errors as JSON, with the input of sensitive fields masked."""
    details = []
    for err in errors:
        item = {k: _jsonable(v) for k, v in dict(err).items() if k != "url"}
        loc = item.get("loc") or []
        if any(str(part) in SENSITIVE_FIELDS for part in loc):
            item["input"] = "(sensitive)"
        elif isinstance(item.get("input"), dict):
            item["input"] = {
                k: ("(sensitive)" if k in SENSITIVE_FIELDS else v) for k, v in item["input"].items()
            }
        details.append(item)
    return details


def install_error_handlers(app: FastAPI) -> None:
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
        return JSONResponse(
            {"error": "Internal server error", "details": type(exc).__name__}, status_code=500
        )
