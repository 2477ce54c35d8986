"""`/api/v1/jobs`: run a task once on a (local, sandboxed) GPU machine, then destroy it.

Contract §5 with the intended behaviour (DESIGN §6): every CreateJob field is honoured, an unknown
`source`, GPU or list `status` is a 422, the `timeout` alias is range-checked like
`timeout_minutes`, `timeout` is a real status, logs can be tailed while the job runs, cancel
stops the work. Additive: `offset` on the list, `GET /jobs/{id}/outputs[/{path}]`, and the
extra fields of the Job object (see `provider.job_rows.job_view`). Another user's job is a 404,
exactly like a missing one.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from starlette.concurrency import run_in_threadpool

from dumont_plan.errors import FinetuneError, WorkdirError
from dumont_plan.server.context import AppState, StateDep, User, UserDep
from dumont_plan.server.idempotency import idempotent_create_in_tx
from dumont_plan.server.limits import LIST_MAX, MAX_INT, TEXT_MAX
from dumont_plan.server.provider import job_rows, job_secrets, ranks, schedules, uploads, workdirs
from dumont_plan.server.provider import jobs as provider
from dumont_plan.server.provider.executors import MAX_NODES, nodes_problem
from dumont_plan.server.provider.joblog import WholeLog
from dumont_plan.server.provider.market import (
    GPU_MODELS,
    canonical_gpu,
    get_market,
    job_hourly_price,
    known_gpu,
)
from dumont_plan.server.provider.sandbox import WORKSPACE_MOUNT, map_workspace_path
from dumont_plan.wire import JobStatus

DEFAULT_IMAGE = "pytorch/pytorch:2.1.0-cuda12.1-cudnn8-runtime"
DEFAULT_OUTPUT_PATHS = ["/workspace/output"]
# Any absolute directory works for checking that a path maps inside the workspace.
WORKSPACE_MOUNT_DIR = Path(str(WORKSPACE_MOUNT))
MAX_SECRETS = 100
SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
Source = Literal["command", "huggingface", "git", "script"]


class CreateJobRequest(BaseModel):
    """The contract's CreateJob (§5.2); unknown keys are ignored like on the real platform."""

    model_config = ConfigDict(str_max_length=TEXT_MAX)

    name: str | None = Field(
        None, min_length=1, max_length=100, description="Job name (auto-generated if not given)."
    )
    source: Source = Field("command", description="command, huggingface, git or script.")
    command: str | None = Field(
        None,
        validate_default=True,
        description="Shell command to run (bash); required for source command/script.",
    )
    hf_repo: str | None = Field(
        None, validate_default=True, description="Hugging Face repo id (source=huggingface)."
    )
    hf_revision: str | None = Field(None, description="Branch, tag or commit (default main).")
    hf_token: str | None = Field(
        None, description="Token for private repos; only ever passed in the environment."
    )
    secrets: dict[str, str] | None = Field(
        None,
        max_length=MAX_SECRETS,
        description=(
            "Secret values the job uses, by name (additive): exported to the job as environment"
            " variables of these names, masked as *** in its log, never written to disk; where"
            " they appear in command, setup_script, pip_packages, git_url, git_branch, hf_repo or"
            " hf_revision, the control plane stores *** instead; any other field is a 422."
        ),
    )
    git_url: str | None = Field(
        None,
        validate_default=True,
        description="Clone URL (source=git); user:token@ credentials go through GIT_ASKPASS.",
    )
    git_branch: str | None = Field(None, description="Branch to clone (default: the remote's).")
    setup_script: str | None = Field(None, description="Runs after pip, before the command.")
    pip_packages: list[str] | None = Field(
        None, max_length=LIST_MAX, description="Installed before the setup script."
    )
    offer_id: int | None = Field(
        None, ge=0, le=MAX_INT, description="Market offer to price the job on."
    )
    gpu_type: str = Field("RTX 4090", description="GPU model (ignored when offer_id is given).")
    num_gpus: int = Field(1, ge=1, le=8, description="Number of GPUs (1-8).")
    num_nodes: int = Field(
        1, ge=1, le=MAX_NODES, description="Additive: machines (local: ranks), billed each."
    )
    use_spot: bool = Field(True, description="Spot (cheaper, interruptible) or on-demand.")
    spot: bool | None = Field(None, description="Alias of use_spot; wins when given.")
    disk_size: float = Field(50, ge=10, description="Disk size in GB (>= 10).")
    timeout_minutes: int = Field(480, ge=10, le=1440, description="Max runtime (10-1440 min).")
    timeout: int | None = Field(
        None, ge=10, le=1440, description="Alias of timeout_minutes; wins when given."
    )
    image: str = Field(DEFAULT_IMAGE, description="Docker image (recorded; runs on the host).")
    output_paths: list[str] | None = Field(
        None, max_length=LIST_MAX, description="Paths under /workspace kept as outputs."
    )
    save_logs: bool = Field(True, description="Keep the log after the job ends.")
    auto_destroy: bool = Field(True, description="Remove the workspace after the job ends.")
    max_retries: int = Field(0, ge=0, le=5, description="Retries of a failed/interrupted run.")
    workdir_id: str | None = Field(
        None,
        max_length=40,
        description="Additive: an uploaded workdir (POST /jobs/workdirs) unpacked into "
        "/workspace before the setup script and the command.",
    )
    start_at: datetime | None = Field(
        None,
        description=(
            "Additive: start the job at this ISO time (with Z or an offset; without one it is"
            " UTC); it waits in status `scheduled` until then. Cancel works while it waits."
        ),
    )

    @field_validator("command")
    @classmethod
    def _command_needed(cls, value: str | None, info: ValidationInfo) -> str:
        if (
            info.data.get("source", "command") in ("command", "script")
            and not (value or "").strip()
        ):
            raise ValueError(
                "a command is required when source is 'command' or 'script'; "
                'pass the shell command to run, e.g. "python train.py"'
            )
        return value or ""

    @field_validator("secrets")
    @classmethod
    def _secret_names(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for name in value or {}:
            if not SECRET_NAME.fullmatch(name) or name.upper().startswith("DUMONT_"):
                raise ValueError(
                    "secret names are letters, digits and '_' (not starting with a digit), "
                    "at most 100 characters, and do not start with DUMONT_"
                )
        return value

    @field_validator("hf_repo")
    @classmethod
    def _hf_repo_needed(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("source") == "huggingface" and not (value or "").strip():
            raise ValueError("hf_repo is required when source is 'huggingface', e.g. 'org/model'")
        return value

    @field_validator("git_url")
    @classmethod
    def _git_url_needed(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("source") == "git" and not (value or "").strip():
            raise ValueError("git_url is required when source is 'git'")
        return value

    @field_validator("gpu_type")
    @classmethod
    def _known_gpu(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("offer_id") is None and not known_gpu(value):
            names = ", ".join(GPU_MODELS)
            raise ValueError(f"unknown GPU type {value!r}; use one of: {names}")
        return canonical_gpu(value)

    @field_validator("output_paths")
    @classmethod
    def _inside_workspace(cls, value: list[str] | None) -> list[str] | None:
        for path in value or []:
            if map_workspace_path(WORKSPACE_MOUNT_DIR, path) is None:
                raise ValueError(
                    f"{path!r} is outside {WORKSPACE_MOUNT}; "
                    "use a path under /workspace (or relative to it)"
                )
        return value

    @field_validator("pip_packages")
    @classmethod
    def _no_blank_packages(cls, value: list[str] | None) -> list[str] | None:
        if any(not p.strip() for p in value or []):
            raise ValueError("pip_packages has an empty entry; remove it")
        return value


class JobOut(BaseModel):
    id: str
    name: str
    status: str
    source: str
    gpu_type: str
    instance_id: int | None = None
    ssh_host: str | None = None
    ssh_port: int | None = None
    created_at: str
    started_at: str | None = None
    completed_at: str | None = None
    duration: str | None = None
    total_cost: float = 0.0
    gpu_hours: float = 0.0
    error_message: str | None = None
    use_spot: bool = Field(description="Additive: spot or on-demand pricing.")
    num_gpus: int = Field(description="Additive.")
    num_nodes: int = Field(1, description="Additive: machines (ranks); the price counts each.")
    price_per_hour: float = Field(description="Additive: $/h the job is billed at.")
    timeout_minutes: int = Field(description="Additive.")
    max_retries: int = Field(description="Additive.")
    attempt: int = Field(description="Additive: current or last attempt, 1-based (0 = not yet).")
    exit_code: int | None = Field(None, description="Additive: exit code of the last run.")
    start_at: str | None = Field(None, description="Additive: when a scheduled job starts (UTC).")
    schedule_id: str | None = Field(None, description="Additive: the schedule that created it.")


class JobListOut(BaseModel):
    jobs: list[JobOut]
    total: int


class JobLogsOut(BaseModel):
    job_id: str
    logs: str
    next_offset: int = Field(
        description="Additive: the byte offset to ask for next (`?offset=`): only what is new."
    )
    size: int = Field(description="Additive: the log's size in bytes when it was read.")


class OutputFile(BaseModel):
    path: str
    size: int


class JobOutputsOut(BaseModel):
    job_id: str
    outputs: list[OutputFile]


router = APIRouter(prefix="/jobs", tags=["jobs"])


def _bad_field(field: str, message: str, value: Any, part: str = "body") -> Exception:
    """A 422 about `field` of the body (or of the query, with `part="query"`)."""
    return RequestValidationError(
        [{"type": "value_error", "loc": (part, field), "msg": message, "input": value}]
    )


def _job_config(state: AppState, body: CreateJobRequest) -> tuple[dict[str, Any], float]:
    """The job's stored configuration (aliases resolved, no secret) and its $/h."""
    use_spot = body.spot if body.spot is not None else body.use_spot
    timeout_minutes = body.timeout if body.timeout is not None else body.timeout_minutes
    settings = state.settings
    gpu_type = body.gpu_type
    if body.offer_id is not None:
        machine = get_market(settings.market_seed, settings.market_size).by_offer(body.offer_id)
        if machine is None:
            raise _bad_field(
                "offer_id",
                f"offer {body.offer_id} is not on the market; "
                "pick one from GET /api/v1/instances/offers or leave it out",
                body.offer_id,
            )
        gpu_type = machine.gpu_name
        price = machine.price(use_spot)
    else:
        price = job_hourly_price(
            gpu_type,
            use_spot,
            time.time(),
            num_gpus=body.num_gpus,
            seed=settings.market_seed,
            size=settings.market_size,
        )
    problem = nodes_problem(settings, body.num_nodes)
    if problem is not None:
        raise _bad_field("num_nodes", problem, body.num_nodes)
    price *= body.num_nodes
    name = body.name or (
        datetime.now(UTC).strftime("job-%Y%m%d-%H%M%S-") + provider.new_job_id()[4:]
    )
    config = body.model_dump(exclude={"hf_token", "spot", "timeout", "secrets", "start_at"})
    config.update(
        name=name,
        gpu_type=gpu_type,
        use_spot=use_spot,
        timeout_minutes=timeout_minutes,
        pip_packages=body.pip_packages or [],
        output_paths=DEFAULT_OUTPUT_PATHS if body.output_paths is None else body.output_paths,
    )
    return config, price


def _own_job(state: AppState, user: User, job_id: str) -> Any:
    row = job_rows.get_row(state, user.id, job_id)
    if row is None:
        raise HTTPException(404, f"Job {job_id} not found")
    return row


@router.post("/", status_code=201, response_model=JobOut, responses={201: {"model": JobOut}})
def create_job(
    body: CreateJobRequest, request: Request, state: StateDep, user: UserDep
) -> Response:
    """Create a job: it gets a sandbox and a runner at once (201 with the Job); with a future
    `start_at` it waits in status `scheduled` and the control plane starts it then."""
    config, price = _job_config(state, body)
    refused = job_secrets.refused_field(config, body.secrets)
    if refused is not None:
        raise _bad_field(
            refused,
            f"a secret may not be used in `{refused}` (it would be stored as sent); secrets "
            "go in command, setup_script, pip_packages, git_url, git_branch or hf_repo/revision",
            job_secrets.MASK,
        )
    workdir = None
    if body.workdir_id is not None:
        workdir = workdirs.own_workdir(state, user.id, body.workdir_id)
        if workdir is None:
            raise _bad_field(
                "workdir_id",
                f"workdir {body.workdir_id!r} not found; upload one with POST "
                "/api/v1/jobs/workdirs (the CLI: dumont job create --workdir .)",
                body.workdir_id,
            )
    start_at, refused = schedules.start_time(state, body.start_at)
    if refused is not None:
        raise _bad_field("start_at", refused, str(body.start_at))
    return idempotent_create_in_tx(
        request,
        state,
        user,
        lambda claim: provider.submit_job(
            state,
            user.id,
            config,
            body.hf_token,
            price,
            claim.record if claim else None,
            secrets=body.secrets,
            workdir=workdir,
            start_at=start_at,
        ),
    )


class WorkdirOut(BaseModel):
    workdir_id: str
    sha256: str
    size: int = Field(description="The archive's size in bytes.")
    files: int = Field(description="Entries in the archive (files, folders, links).")
    unpacked_size: int


WORKDIR_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary", "title": "File"}},
            }
        }
    },
}


@router.post(
    "/workdirs",
    status_code=201,
    response_model=WorkdirOut,
    responses={201: {"model": WorkdirOut}},
    openapi_extra={"requestBody": WORKDIR_BODY},
)
async def upload_workdir(request: Request, state: StateDep, user: UserDep) -> dict[str, Any]:
    """Additive: upload a job's code as a tar.gz (multipart field `file`); a job created with
    its `workdir_id` finds it unpacked in /workspace. Only its owner can use it."""
    folder = await run_in_threadpool(workdirs.user_workdir_dir, state, user.id)
    await run_in_threadpool(uploads.remove_user_leftovers, folder)
    limit = min(workdirs.MAX_BYTES, state.settings.dataset_max_bytes)
    try:
        boundary = uploads.boundary_of(request.headers.get("content-type", ""))
        sink = uploads.MultipartSink(boundary, folder, limit)
    except FinetuneError as exc:
        raise HTTPException(exc.status, exc.message.replace("dataset", "workdir")) from exc
    sink.too_big = (
        f"the workdir archive is larger than this server's limit of {limit} bytes; leave big "
        "files out (.gitignore or .dumontignore) and fetch data in the job instead"
    )
    try:
        async for chunk in request.stream():
            sink.feed(chunk)
        sink.close()
    except FinetuneError as exc:
        sink.discard()
        raise HTTPException(exc.status, exc.message) from exc
    except BaseException:
        sink.discard()
        raise
    try:
        return await run_in_threadpool(workdirs.store_workdir, state, user.id, sink)
    except WorkdirError as exc:
        if exc.status == 422:
            raise _bad_field("file", exc.message, None) from exc
        raise HTTPException(exc.status, exc.message) from exc


@router.get("/", response_model=JobListOut)
def list_jobs(
    state: StateDep,
    user: UserDep,
    limit: int = Query(50, ge=1, le=100, description="Max jobs to return"),
    status: JobStatus | None = Query(None, description="Filter by status"),
    offset: int = Query(0, ge=0, le=MAX_INT, description="Additive: jobs to skip (pagination)"),
) -> dict[str, Any]:
    """The user's jobs, newest first; `total` counts all that match the filter."""
    if state.settings.real_platform:  # newest `limit` jobs, `offset` ignored, total = their number
        rows, _ = job_rows.list_rows(state, user.id, status, limit, 0)
        total = len(rows)
    else:
        rows, total = job_rows.list_rows(state, user.id, status, limit, offset)
    now = time.time()
    return {"jobs": [job_rows.job_view(r, now) for r in rows], "total": total}


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: str, state: StateDep, user: UserDep) -> dict[str, Any]:
    return job_rows.job_view(_own_job(state, user, job_id))


@router.post("/{job_id}/cancel", response_model=JobOut)
def cancel_job(job_id: str, state: StateDep, user: UserDep) -> dict[str, Any]:
    """Stop the job's processes; it ends `cancelled` and never changes again."""
    row = _own_job(state, user, job_id)
    if row["status"] in provider.FINISHED or not provider.cancel_job(state, row):
        raise HTTPException(400, f"Job {job_id} is already finished")
    return job_rows.job_view(_own_job(state, user, job_id))


@router.get("/{job_id}/logs", response_model=JobLogsOut)
def job_logs(
    job_id: str,
    state: StateDep,
    user: UserDep,
    tail: int | None = Query(None, ge=0, le=MAX_INT, description="Only the last N lines"),
    offset: int | None = Query(
        None,
        ge=0,
        le=MAX_INT,
        description="Additive: only what follows this byte offset (a `next_offset` of an earlier "
        "answer), at most 1 MiB per answer",
    ),
    rank: int = Query(0, ge=0, le=MAX_INT, description="Additive: this rank's log (0-based)"),
) -> Response:
    """The job's output so far (stdout and stderr of every step): whole, its last lines, or
    what follows a byte offset. `next_offset` says where to continue. A job of several nodes
    has a log per rank: rank 0's (the job's own notes too) unless `rank` says another."""
    if tail is not None and offset is not None:
        raise _bad_field("offset", "give tail or offset, not both", offset, "query")
    row = _own_job(state, user, job_id)
    problem = ranks.log_problem(provider.job_dir(state, job_id), row["num_nodes"], rank)
    if problem is not None:
        raise _bad_field("rank", problem, rank, "query")
    piece = provider.read_logs(state, row, tail, offset, rank)
    head = {"job_id": job_id, "next_offset": piece.size, "size": piece.size}
    if isinstance(piece, WholeLog):
        # Streamed from a worker thread in pieces: a big log never stalls the event loop.
        opening = json.dumps(head)[:-1].encode() + b', "logs": "'
        body = itertools.chain([opening], piece.json_text(), [b'"}'])
        return StreamingResponse(body, media_type="application/json")
    head.update(logs=piece.text, next_offset=piece.next_offset)
    return Response(json.dumps(head).encode(), media_type="application/json")


@router.get("/{job_id}/outputs", response_model=JobOutputsOut)
def job_outputs(job_id: str, state: StateDep, user: UserDep) -> dict[str, Any]:
    """Additive: the files kept from `output_paths` (paths relative to /workspace)."""
    _own_job(state, user, job_id)
    return {"job_id": job_id, "outputs": provider.job_sandbox(state, job_id).list_outputs()}


@router.get("/{job_id}/outputs/{path:path}", response_class=FileResponse)
def job_output_file(job_id: str, path: str, state: StateDep, user: UserDep) -> FileResponse:
    """Additive: download one kept output file."""
    _own_job(state, user, job_id)
    file = provider.job_sandbox(state, job_id).output_file(path)
    if file is None:
        raise HTTPException(404, f"Output {path} not found for job {job_id}")
    return FileResponse(file, media_type="application/octet-stream", filename=file.name)
