"""`/api/v1/state/{project}`: remote state for `backend: http`, Terraform's HTTP backend protocol.

One document and one lock per user and project (another user's project is someone else's:
404 for reads, a separate namespace for writes). Additive; `/health` lists `state.http-backend`.

    GET    /state/{project}           200 the document as stored, 404 when there is none
    POST   /state/{project}?ID=L      store it (200); while locked, `ID` must be the lock's
    DELETE /state/{project}?ID=L      forget the document (200)
    LOCK   /state/{project}           body: the lock info (`ID`, `Operation`, `Who`, `Created`,
                                      ...); 200, or 423 with the holder's info
    UNLOCK /state/{project}?ID=L      200 (also when not locked), or 409 with the holder's info

Beyond the protocol (which stores whatever it gets), a document with `serial` and `lineage`
(a dumont ledger, a Terraform state) replaces the stored one only when its lineage is the
same and its serial is higher, or it is the very same document (a retried write): anything
else is a 409 saying why, never a blind overwrite. A write whose `ID` is not the lock held,
or names a lock no longer held (force-unlocked since), is a 409 too.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from dumont_plan.server.context import AppState, StateDep, User, UserDep

router = APIRouter(prefix="/state", tags=["state"])

PROJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
LOCK_ID_MAX = 200
LOCK_INFO_MAX = 16 * 1024


def _invalid(loc: list[str], msg: str) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": msg}])


def _project(project: str) -> str:
    if not PROJECT_RE.match(project):
        raise _invalid(
            ["path", "project"],
            "a project name is 1-100 letters, digits, `.`, `_` or `-`, starting with a "
            "letter or digit",
        )
    return project


def _lock_id(value: str | None, loc: list[str]) -> str | None:
    if value is not None and (not value or len(value) > LOCK_ID_MAX):
        raise _invalid(loc, f"a lock ID is 1-{LOCK_ID_MAX} characters")
    return value


def _json_object(body: bytes, loc: str) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")  # json.loads would also read UTF-16/32; stored as UTF-8
    except UnicodeDecodeError:
        raise _invalid(["body"], f"the {loc} must be a JSON object in UTF-8") from None
    try:
        data = json.loads(text or "null")
    except (ValueError, RecursionError):  # RecursionError: nested too deeply
        raise _invalid(["body"], f"the {loc} must be a JSON object") from None
    if not isinstance(data, dict):
        raise _invalid(["body"], f"the {loc} must be a JSON object")
    return data


def _row(state: AppState, user: User, project: str) -> Any:
    return state.store.query_one(
        "SELECT * FROM states WHERE user_id = ? AND project = ?", (user.id, project)
    )


def _holder(row: Any, status: int) -> JSONResponse:
    """The lock info of the holder (what Terraform's protocol answers 423/409 with)."""
    info = json.loads(row["lock_info"]) if row["lock_info"] else {"ID": row["lock_id"]}
    return JSONResponse(info, status_code=status)


def _lock_refusal(row: Any, given: str | None) -> JSONResponse | None:
    """Why a write with lock ID `given` is refused (None: it may write)."""
    held = row["lock_id"] if row is not None else None
    if held is not None and given != held:
        return _holder(row, 409)
    if held is None and given is not None:
        message = (
            f"the lock {given} is not held (it was released or force-unlocked): "
            "lock the state again before writing"
        )
        return JSONResponse({"error": message}, status_code=409)
    return None


@router.get("/{project}")
def get_state(project: str, state: StateDep, user: UserDep) -> Response:
    row = _row(state, user, _project(project))
    if row is None or row["document"] is None:
        raise HTTPException(404, f"No state stored for project {project}")
    return Response(row["document"], media_type="application/json")


def _store_document(
    state: AppState, user: User, project: str, text: str, data: dict[str, Any], given: str | None
) -> Response:
    serial, lineage = data.get("serial"), data.get("lineage")
    serial = serial if isinstance(serial, int) and not isinstance(serial, bool) else None
    lineage = lineage if isinstance(lineage, str) else None
    with state.store.tx() as conn:
        row = conn.execute(
            "SELECT * FROM states WHERE user_id = ? AND project = ?", (user.id, project)
        ).fetchone()
        refusal = _lock_refusal(row, given)
        if refusal is not None:
            return refusal
        stored = row["document"] if row is not None else None
        if stored is not None and stored == text:
            return JSONResponse({"stored": True, "serial": serial})  # a retried write
        if stored is not None and row["lineage"] and lineage and row["lineage"] != lineage:
            message = (
                f"the state sent has lineage {lineage}, the stored one {row['lineage']}: "
                "it is another state, refusing to replace it"
            )
            return JSONResponse({"error": message}, status_code=409)
        known = row["serial"] if stored is not None else None
        if known is not None and serial is not None and serial <= int(known):
            message = (
                f"stale serial {serial}: the stored state is at serial {known} "
                "(it was written since this one was read)"
            )
            return JSONResponse({"error": message}, status_code=409)
        conn.execute(
            "INSERT INTO states (user_id, project, document, serial, lineage, updated_ts) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, project) DO UPDATE SET "
            "document = excluded.document, serial = excluded.serial, "
            "lineage = excluded.lineage, updated_ts = excluded.updated_ts",
            (user.id, project, text, serial, lineage, time.time()),
        )
    return JSONResponse({"stored": True, "serial": serial})


@router.post("/{project}")
async def post_state(project: str, request: Request, state: StateDep, user: UserDep) -> Response:
    """Store the state document (see the module doc for what is refused)."""
    project = _project(project)
    given = _lock_id(request.query_params.get("ID"), ["query", "ID"])
    body = await request.body()
    data = _json_object(body, "state document")
    text = body.decode("utf-8")
    return await run_in_threadpool(_store_document, state, user, project, text, data, given)


@router.delete("/{project}")
def delete_state(project: str, request: Request, state: StateDep, user: UserDep) -> Response:
    project = _project(project)
    given = _lock_id(request.query_params.get("ID"), ["query", "ID"])
    with state.store.tx() as conn:
        row = conn.execute(
            "SELECT * FROM states WHERE user_id = ? AND project = ?", (user.id, project)
        ).fetchone()
        if row is None or row["document"] is None:
            raise HTTPException(404, f"No state stored for project {project}")
        refusal = _lock_refusal(row, given)
        if refusal is not None:
            return refusal
        conn.execute(
            "UPDATE states SET document = NULL, serial = NULL, lineage = NULL, updated_ts = ? "
            "WHERE user_id = ? AND project = ?",
            (time.time(), user.id, project),
        )
    return JSONResponse({"deleted": True})


def _lock(state: AppState, user: User, project: str, info: dict[str, Any]) -> Response:
    lock_id = str(info["ID"])
    with state.store.tx() as conn:
        row = conn.execute(
            "SELECT * FROM states WHERE user_id = ? AND project = ?", (user.id, project)
        ).fetchone()
        if row is not None and row["lock_id"] is not None:
            if row["lock_id"] == lock_id:
                return JSONResponse(json.loads(row["lock_info"]))  # a retried LOCK
            return _holder(row, 423)
        text = json.dumps(info)
        conn.execute(
            "INSERT INTO states (user_id, project, lock_id, lock_info, updated_ts) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, project) DO UPDATE SET "
            "lock_id = excluded.lock_id, lock_info = excluded.lock_info",
            (user.id, project, lock_id, text, time.time()),
        )
    return JSONResponse(info)


@router.api_route("/{project}", methods=["LOCK"], include_in_schema=False)
async def lock_state(project: str, request: Request, state: StateDep, user: UserDep) -> Response:
    """Take the lock (Terraform's LOCK): 200, or 423 with the holder's lock info."""
    project = _project(project)
    body = await request.body()
    if len(body) > LOCK_INFO_MAX:
        raise _invalid(["body"], f"the lock info is at most {LOCK_INFO_MAX} bytes")
    info = _json_object(body, "lock info")
    if not isinstance(info.get("ID"), str):
        raise _invalid(["body", "ID"], "the lock info needs a string `ID`")
    _lock_id(info["ID"], ["body", "ID"])
    return await run_in_threadpool(_lock, state, user, project, info)


def _unlock(state: AppState, user: User, project: str, given: str | None) -> Response:
    with state.store.tx() as conn:
        row = conn.execute(
            "SELECT * FROM states WHERE user_id = ? AND project = ?", (user.id, project)
        ).fetchone()
        if row is None or row["lock_id"] is None:
            return JSONResponse({"unlocked": True, "held": False})
        if given != row["lock_id"]:
            return _holder(row, 409)
        conn.execute(
            "UPDATE states SET lock_id = NULL, lock_info = NULL WHERE user_id = ? AND project = ?",
            (user.id, project),
        )
    return JSONResponse({"unlocked": True, "held": True})


@router.api_route("/{project}", methods=["UNLOCK"], include_in_schema=False)
async def unlock_state(project: str, request: Request, state: StateDep, user: UserDep) -> Response:
    """Release the lock whose ID is in `?ID=` or the body's lock info: 200, or 409 with the
    holder's info when another lock is held (force-unlock passes the holder's ID)."""
    project = _project(project)
    given = _lock_id(request.query_params.get("ID"), ["query", "ID"])
    body = await request.body()
    if given is None and body.strip():
        info = _json_object(body, "lock info")
        value = info.get("ID")
        given = _lock_id(value if isinstance(value, str) else None, ["body", "ID"])
    return await run_in_threadpool(_unlock, state, user, project, given)
