"""`/api/v1/finetune`: LoRA fine-tunes on the local executor or SkyPilot (contract §6).

The contract's paths and fields with the intended behaviour (DESIGN §6): an uploaded dataset is
streamed to disk under a size cap, every record checked (a bad one is a 422 naming its line and
field) and kept per user, readable by that user's fine-tunes only; hyper-parameters are nested
under `config` (a flat one is a 422 naming its nested place); an unknown `dataset_source` or
`base_model` is a 422 (with did-you-mean); progress moves while training; `output_model_path`
is set; cancel works in any unfinished state and stops the trainer; another user's fine-tune
or dataset is a 404, exactly like a missing one. Additive: `GET /finetune/presets` and
`preset`, `limit`/`offset`/`status` on the list, `GET /finetune/jobs/{id}/outputs`.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Body, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from dumont_plan.errors import DatasetError, FinetuneError, InstanceError
from dumont_plan.server.context import AppState, StateDep, User, UserDep
from dumont_plan.server.idempotency import KeyClaim, idempotent_create_in_tx
from dumont_plan.server.limits import MAX_INT
from dumont_plan.server.provider import finetune_catalog as catalog
from dumont_plan.server.provider import (
    finetune_inputs,
    finetune_outputs,
    finetunes,
    ft_deploy,
    sky_finetunes,
    uploads,
)
from dumont_plan.server.provider.executors import executor_info, executor_name
from dumont_plan.server.provider.finetune_rows import finetune_view, get_row, list_rows
from dumont_plan.wire import DatasetFormat, DatasetSource, FinetuneStatus

NAME_MAX = 500


class FinetuneConfig(BaseModel):
    """Hyper-parameters (contract §6.3 `config`); unknown keys are a 422 (a typo)."""

    model_config = ConfigDict(extra="forbid")

    lora_rank: int = Field(16, ge=4, le=128, description="LoRA rank (r).")
    lora_alpha: int = Field(16, ge=4, le=128, description="LoRA alpha.")
    learning_rate: float = Field(2e-4, ge=1e-6, le=1e-2, description="Learning rate.")
    epochs: int = Field(1, ge=1, le=10, description="Epochs over the dataset.")
    batch_size: int = Field(2, ge=1, le=65536, description="Per-device batch size.")
    gradient_accumulation_steps: int = Field(4, ge=1, le=128, description="Steps per update.")
    max_seq_length: int = Field(2048, ge=256, le=65536, description="Longest sequence (tokens).")
    warmup_steps: int = Field(5, ge=0, le=10000, description="Linear warm-up steps.")
    weight_decay: float = Field(0.01, ge=0, le=1, description="AdamW weight decay.")
    turbo_mode: bool = Field(False, description="Accepted and ignored (as on the platform).")
    target_modules: list[str] | None = Field(
        None,
        max_length=32,
        description="Additive: the projections LoRA adapts (default q/k/v/o/gate/up/down).",
    )
    max_steps: int | None = Field(
        None, ge=1, le=1_000_000, description="Additive: stop after this many optimizer steps."
    )
    seed: int = Field(3407, ge=0, le=2**31 - 1, description="Additive: the random seed.")


FLAT_ALIASES = {"lr": "learning_rate", "rank": "lora_rank", "alpha": "lora_alpha"}
FLAT_NAMES = {name: name for name in FinetuneConfig.model_fields} | FLAT_ALIASES


class CreateFinetuneRequest(BaseModel):
    """The contract's CreateFT (§6.3); other unknown keys are ignored as on the platform."""

    model_config = ConfigDict(extra="allow", str_max_length=NAME_MAX)

    name: str = Field(min_length=1, max_length=100, description="Job name.")
    base_model: str = Field(
        min_length=1,
        description="Base model: an id of GET /finetune/models, a model in the "
        "server's Hugging Face cache, or a local model folder.",
    )
    dataset_source: DatasetSource = Field(description="upload, url, huggingface or existing.")
    dataset_path: str = Field(
        min_length=1,
        max_length=2048,
        description="The dataset_path of an upload, an http(s) URL, or a Hugging Face dataset id.",
    )
    dataset_format: DatasetFormat = Field(
        "alpaca", description="alpaca, sharegpt or raw (an upload's own format when left out)."
    )
    config: FinetuneConfig | None = Field(None, description="Hyper-parameters, nested.")
    gpu_type: str = Field("A100", max_length=100, description="GPU type (short name).")
    num_gpus: int = Field(1, ge=1, le=8, description="Number of GPUs.")
    method: str | None = Field("supervised", description="Accepted and ignored.")
    job_id: str | None = Field(None, description="Accepted and ignored (ids are generated).")
    model_output_name: str | None = Field(None, description="Accepted and ignored.")
    preset: str | None = Field(
        None, description="Additive: a named bundle of GET /finetune/presets; config wins."
    )
    use_spot: bool = Field(
        True, description="Additive: on SkyPilot, train on a spot machine (default, as §6.7)."
    )


class FinetuneLogsOut(BaseModel):
    job_id: str
    logs: str


class DeployRequest(BaseModel):
    gpu_type: str = Field("RTX4090", max_length=100, description="GPU type for inference.")
    instance_name: str | None = Field(None, max_length=200, description="Instance label.")
    max_price: float = Field(2.0, ge=0, description="Maximum $/h.")
    port: int = Field(8000, ge=1024, le=65535, description="Port of the model server.")


router = APIRouter(prefix="/finetune", tags=["finetune"])


def _http(exc: FinetuneError) -> HTTPException:
    return HTTPException(exc.status, exc.message)


def _invalid(exc: DatasetError) -> RequestValidationError:
    loc = exc.loc or ("body",)
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": exc.message}])


def _own(state: AppState, user: User, job_id: str) -> Any:
    row = get_row(state, user.id, job_id)
    if row is None:
        raise HTTPException(404, f"Job {job_id} not found")
    return row


@router.get("/status")
def finetune_status(state: StateDep, user: UserDep) -> dict[str, Any]:
    """Which executors can run fine-tunes here, and why not (`executors`, additive), and the
    executor this server runs jobs with (`executor`: name, available, reason; additive)."""
    info = executor_info(state)
    sky_problem = sky_finetunes.skypilot_problem(state)
    return {**catalog.status(state.settings, sky_problem), "executor": info}


@router.get("/models")
def finetune_models(state: StateDep, user: UserDep) -> dict[str, Any]:
    """The supported base models (§6.2)."""
    return {"models": catalog.MODELS}


@router.get("/presets")
def finetune_presets(user: UserDep) -> dict[str, Any]:
    """Additive: named hyper-parameter bundles a create may name in `preset`."""
    return {"presets": [{"name": k, **v} for k, v in catalog.PRESETS.items()]}


UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {"type": "string", "format": "binary", "title": "File"},
                    "format": {
                        "type": "string",
                        "enum": ["alpaca", "sharegpt", "raw"],
                        "title": "Format",
                        "description": "Additive: the records' format (detected when absent).",
                    },
                },
            }
        }
    },
}


@router.post("/jobs/upload-dataset", openapi_extra={"requestBody": UPLOAD_BODY})
async def upload_dataset(
    request: Request,
    state: StateDep,
    user: UserDep,
    format: DatasetFormat | None = Query(
        None, description="Additive: the records' format (detected when absent)."
    ),
) -> dict[str, Any]:
    """Upload a .json/.jsonl dataset: streamed to disk, every record checked; the answer adds
    `records`, `format` and `sha256` (additive) to `dataset_path`."""
    folder = await run_in_threadpool(uploads.user_dataset_dir, state, user.id)
    await run_in_threadpool(uploads.remove_user_leftovers, folder)
    try:
        boundary = uploads.boundary_of(request.headers.get("content-type", ""))
        sink = uploads.MultipartSink(boundary, folder, state.settings.dataset_max_bytes)
    except FinetuneError as exc:
        raise _http(exc) from exc
    try:
        async for chunk in request.stream():
            sink.feed(chunk)
        sink.close()
    except FinetuneError as exc:
        sink.discard()
        raise _http(exc) from exc
    except BaseException:
        sink.discard()
        raise
    if format is not None and "format" not in sink.fields:
        sink.fields["format"] = format
    try:
        return await run_in_threadpool(uploads.store_upload, state, user.id, sink)
    except DatasetError as exc:
        raise _invalid(exc) from exc
    except FinetuneError as exc:
        raise _http(exc) from exc


def _flat_fields(body: CreateFinetuneRequest) -> None:
    for key in body.model_extra or {}:
        nested = FLAT_NAMES.get(key)
        if nested is not None:
            raise RequestValidationError(
                [
                    {
                        "type": "value_error",
                        "loc": ("body", key),
                        "msg": f"{key}: put it under config.{nested} (hyper-parameters are "
                        "nested in `config`)",
                    }
                ]
            )


def _merged_config(body: CreateFinetuneRequest) -> dict[str, Any]:
    """The preset's values, then the request's own `config` values over them."""
    base: dict[str, Any] = {}
    if body.preset is not None:
        preset = catalog.PRESETS.get(body.preset)
        if preset is None:
            names = ", ".join(catalog.PRESETS)
            raise _invalid(
                DatasetError(
                    f"unknown preset {body.preset!r}; use one of {names}", ("body", "preset")
                )
            )
        base = dict(preset["config"])
    given = body.config or FinetuneConfig()
    merged = FinetuneConfig.model_validate(
        {**base, **given.model_dump(include=given.model_fields_set)}
    )
    return merged.model_dump(exclude={"turbo_mode"}, exclude_none=True)


@router.post(
    "/jobs",
    status_code=201,
    responses={503: {"description": "The executor cannot run fine-tunes (SkyPilot's check)"}},
)
def create_finetune(
    body: CreateFinetuneRequest, request: Request, state: StateDep, user: UserDep
) -> Response:
    """Create a fine-tune: pending, then queued and running as the local executor takes it.
    With an `Idempotency-Key`, a retried create answers the first one's job."""
    return idempotent_create_in_tx(
        request, state, user, lambda claim: _create(body, state, user, claim)
    )


def _create(
    body: CreateFinetuneRequest, state: AppState, user: User, claim: KeyClaim | None
) -> dict[str, Any]:
    _flat_fields(body)
    problem = catalog.base_model_problem(state.settings, body.base_model)
    if problem is not None:
        raise _invalid(DatasetError(problem, ("body", "base_model")))
    config = _merged_config(body)
    declared = body.dataset_format if "dataset_format" in body.model_fields_set else None
    try:
        resolved = finetune_inputs.resolve_dataset(
            state, user.id, body.dataset_source, body.dataset_path, declared
        )
    except DatasetError as exc:
        raise _invalid(exc) from exc
    fields = {
        **body.model_dump(include={"name", "base_model", "dataset_source", "dataset_path"}),
        "dataset_path": resolved.shown_path or body.dataset_path,
        "dataset_format": resolved.format,
        "gpu_type": body.gpu_type,
        "num_gpus": body.num_gpus,
        "config": config,
        "preset": body.preset,
        "use_spot": body.use_spot,
    }
    try:
        if executor_name(state.settings) == "skypilot":
            problem = sky_finetunes.usable(state)
            if problem is not None:
                raise HTTPException(503, f"No fine-tuning backend available: {problem}")
        return finetunes.submit(
            state,
            user.id,
            fields,
            resolved.dataset,
            finetune_inputs.model_paths(state, body.base_model),
            claim.record if claim else None,
        )
    finally:
        if resolved.temporary:
            resolved.dataset.unlink(missing_ok=True)


@router.get("/jobs")
def list_finetunes(
    state: StateDep,
    user: UserDep,
    status: FinetuneStatus | None = Query(None, description="Additive: filter by status"),
    limit: int = Query(50, ge=1, le=100, description="Additive: max jobs to return"),
    offset: int = Query(0, ge=0, le=MAX_INT, description="Additive: jobs to skip"),
) -> dict[str, Any]:
    """The user's fine-tunes, newest first; `count` counts all that match the filter."""
    rows, total = list_rows(state, user.id, status, limit, offset)
    return {"jobs": [finetune_view(r) for r in rows], "count": total}


def _refreshed(state: AppState, user: User, job_id: str) -> dict[str, Any]:
    finetunes.refresh(state, _own(state, user, job_id))
    return finetune_view(_own(state, user, job_id))


@router.get("/jobs/{job_id}")
def get_finetune(
    job_id: str,
    state: StateDep,
    user: UserDep,
    refresh: bool = Query(False, description="Read the executor's state first"),
) -> dict[str, Any]:
    if refresh:
        return _refreshed(state, user, job_id)
    return finetune_view(_own(state, user, job_id))


@router.post("/jobs/{job_id}/refresh")
def refresh_finetune(job_id: str, state: StateDep, user: UserDep) -> dict[str, Any]:
    """Read the executor's state now and return the job."""
    return _refreshed(state, user, job_id)


@router.get("/jobs/{job_id}/logs", response_model=FinetuneLogsOut)
def finetune_logs(
    job_id: str,
    state: StateDep,
    user: UserDep,
    tail: int = Query(100, ge=0, le=MAX_INT, description="The last N lines"),
) -> dict[str, Any]:
    """The trainer's output so far (live while it trains): its last `tail` lines."""
    row = _own(state, user, job_id)
    return {"job_id": job_id, "logs": finetunes.read_logs(state, row, tail)}


@router.post("/jobs/{job_id}/cancel")
def cancel_finetune(job_id: str, state: StateDep, user: UserDep) -> dict[str, Any]:
    """Cancel a fine-tune in any unfinished state; its trainer is stopped."""
    row = _own(state, user, job_id)
    if row["status"] in finetunes.FINISHED or not finetunes.cancel(state, row):
        raise HTTPException(400, f"Job {job_id} is already finished ({row['status']})")
    return {"success": True, "message": f"Job {job_id} cancelled"}


@router.delete("/jobs/{job_id}")
def delete_finetune(job_id: str, state: StateDep, user: UserDep) -> dict[str, Any]:
    """Delete a fine-tune that is not training (its outputs go with it)."""
    row = _own(state, user, job_id)
    if row["status"] in finetunes.ACTIVE:
        raise HTTPException(
            400, f"Job {job_id} is {row['status']}; cancel it first, then delete it"
        )
    finetunes.delete(state, row)
    return {"success": True, "message": f"Job {job_id} deleted"}


@router.get("/jobs/{job_id}/outputs", response_model=None)
def finetune_outputs_route(
    job_id: str,
    state: StateDep,
    user: UserDep,
    path: str | None = Query(None, max_length=1024, description="One file to download"),
    archive: Literal["tar.gz"] | None = Query(None, description="Everything as one archive"),
) -> dict[str, Any] | FileResponse:
    """Additive: the kept outputs (adapter, tokenizer, checkpoints, training_stats.json):
    their list, one file (`path`), or all of them (`archive=tar.gz`)."""
    _own(state, user, job_id)
    box = finetunes.sandbox_of(state, job_id)
    if path is not None:
        file = box.output_file(path)
        if file is None:
            raise HTTPException(404, f"Output {path} not found for job {job_id}")
        return FileResponse(file, media_type="application/octet-stream", filename=file.name)
    if archive is not None:
        made = finetune_outputs.archive(box, job_id)
        return FileResponse(
            made,
            media_type="application/gzip",
            filename=f"finetune-{job_id}-outputs.tar.gz",
            background=BackgroundTask(made.unlink, missing_ok=True),
        )
    return {"job_id": job_id, "outputs": box.list_outputs()}


@router.post("/jobs/{job_id}/deploy")
def deploy_finetune(
    job_id: str,
    state: StateDep,
    user: UserDep,
    body: DeployRequest = Body(None),  # optional: every field has a default
) -> dict[str, Any]:
    """Serve the base model with this fine-tune's adapter on a new instance (OpenAI API)."""
    row = _own(state, user, job_id)
    body = body or DeployRequest()
    try:
        return ft_deploy.deploy(
            state, user.id, row, body.gpu_type, body.instance_name, body.max_price, body.port
        )
    except (FinetuneError, InstanceError) as exc:
        raise HTTPException(exc.status, exc.message) from exc
