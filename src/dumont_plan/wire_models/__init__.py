"""Read models of the objects the Dumont API v1 returns: what the client hands to its callers.

A leaf module (pydantic, `errors` and `wire` only): the client returns these, and the kinds'
pure parts and the planner read them without loading the client or httpx.

    job = client.jobs.get("job_1a2b3c4d")       # Job
    job.status, job.is_finished, job.raw        # typed fields; the server's object as sent

Fields, types and optionality follow the wire contract (`JobResponse`, `InstanceResponse`,
`GpuOfferResponse`, `MachineAttemptResponse`, `MachineStatsResponse`,
`MachineBlacklistResponse` of the real platform's OpenAPI), read leniently where the real
server is loose: fields it may omit are optional, a missing or null `status` reads `unknown`,
numbers are accepted where text is expected (a machine id sent as 42 reads "42"). Unknown
fields are ignored, so a newer server never breaks an older client.

`raw` keeps the decoded JSON object each model was read from (every field, the server's
order and spelling): `--output json` and the field listings print it, because a dump of the
model would drop the fields it does not declare and respell others (`22` for `"22"`).

A new kind's model is a subclass of `WireModel` and two calls in its API group:
`Model.from_wire(data, where)` for one object, `Model.list_from_wire(items, where)` for a
page (validated in one call, much faster than one call per object).
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PrivateAttr,
    TypeAdapter,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError

from dumont_plan.errors import UnexpectedResponseError
from dumont_plan.wire import FINISHED_FINETUNE_STATUSES, FINISHED_JOB_STATUSES

JSONObject = dict[str, Any]

# Instance statuses (the provider's `actual_status`) that never turn into `running` by
# themselves (Vast CLI anchors §3.3).
INSTANCE_FAILED_STATUSES = frozenset({"exited", "offline", "error", "failed", "unknown", "deleted"})
JOB_FINISHED_STATUSES = frozenset(FINISHED_JOB_STATUSES)
JOB_FAILED_STATUSES = frozenset({"failed", "cancelled", "timeout"})
FINETUNE_FINISHED_STATUSES = frozenset(FINISHED_FINETUNE_STATUSES)
FINETUNE_FAILED_STATUSES = frozenset({"failed", "cancelled"})


def _status_or_unknown(value: object) -> object:
    """A missing, null or empty status reads `unknown` (the contract's word for it)."""
    return "unknown" if value is None or value == "" else value


Status = Annotated[str, BeforeValidator(_status_or_unknown)]


class WireModel(BaseModel):
    """Base of the read models: unknown fields ignored, immutable, the raw object kept."""

    model_config = ConfigDict(
        extra="ignore", frozen=True, coerce_numbers_to_str=True, defer_build=True
    )

    _raw: JSONObject | None = PrivateAttr(default=None)

    @property
    def raw(self) -> JSONObject:
        """The object as the server sent it (a model built in code: its fields)."""
        # Read from pydantic's store of private values directly: `self._raw` would go through
        # BaseModel.__getattr__, and plans ask for the raw object several times per resource.
        private = self.__pydantic_private__
        raw: JSONObject | None = private.get("_raw") if private else None
        if raw is None:
            return self.model_dump(mode="json")
        return raw

    @classmethod
    def from_wire(cls, data: object, where: str) -> Self:
        """One object of an answer; UnexpectedResponseError when it is not one."""
        if not isinstance(data, dict):
            raise _unexpected(cls, where, f"got {type(data).__name__}, not an object")
        try:
            model = cls.model_validate(data)
        except PydanticValidationError as exc:
            raise _unexpected(cls, where, _first_problem(exc)) from exc
        model._raw = data
        return model

    @classmethod
    def list_from_wire(cls, items: object, where: str) -> list[Self]:
        """A list of objects, validated in one call (entries that are not objects are skipped)."""
        if items is None:
            return []
        if not isinstance(items, list):
            raise _unexpected(cls, where, f"got {type(items).__name__}, not a list")
        objects = [item for item in items if isinstance(item, dict)]
        try:
            models: list[Self] = _list_adapter(cls).validate_python(objects)
        except PydanticValidationError as exc:
            raise _unexpected(cls, where, _first_problem(exc)) from exc
        for model, data in zip(models, objects, strict=True):
            model._raw = data
        return models


@cache
def _list_adapter(cls: type[WireModel]) -> TypeAdapter[list[Any]]:
    return TypeAdapter(list[cls])  # type: ignore[valid-type]


def _first_problem(exc: PydanticValidationError) -> str:
    error = exc.errors(include_url=False, include_context=False)[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])


def _unexpected(cls: type[WireModel], where: str, problem: str) -> UnexpectedResponseError:
    return UnexpectedResponseError(
        f"{where}: the API answered with an unreadable {cls.__name__.lower()} object ({problem})",
        "check that DUMONT_API_URL points at a Dumont API v1 server",
    )


class Job(WireModel):
    """A job (contract §5.3). The server does not echo its config (command, image, ...)."""

    id: str
    name: str | None = None
    status: Status = "unknown"
    source: str | None = None
    gpu_type: str | None = None
    instance_id: int | str | None = None
    ssh_host: str | None = None
    ssh_port: int | str | None = None
    created_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    duration: str | None = None
    total_cost: float | None = None
    gpu_hours: float | None = None
    error_message: str | None = None
    # Additive fields of the local control plane.
    price_per_hour: float | None = None
    use_spot: bool | None = None

    @property
    def is_finished(self) -> bool:
        """A final status: completed, failed, cancelled or timeout."""
        return self.status in JOB_FINISHED_STATUSES

    @property
    def is_failed(self) -> bool:
        """Ended without completing: failed, cancelled or timeout."""
        return self.status in JOB_FAILED_STATUSES


class JobSchedule(Job):
    """A cron schedule of jobs (`/jobs/schedules`, local control plane): read as the `job`
    kind's live object for a job with `schedule: {cron}`. It never finishes; its `status` is
    `scheduled`, or `paused` while paused (the server sends `paused`, no status)."""

    cron: str | None = None
    timezone: str | None = None
    paused: bool = False
    next_run_at: str | None = None
    last_job_id: str | None = None
    runs: int = 0

    @model_validator(mode="before")
    @classmethod
    def _status_from_paused(cls, data: Any) -> Any:
        if isinstance(data, dict) and "status" not in data:
            return {**data, "status": "paused" if data.get("paused") else "scheduled"}
        return data


class JobPage(WireModel):
    """One page of `GET /jobs/`: the jobs (newest first) and how many match in all."""

    jobs: list[Job] = []
    total: int | None = None


class Instance(WireModel):
    """An instance (contract §3.2). `status` is the intended state (`running`, `stopped`),
    `actual_status` the actual one (`loading`, `running`, `exited`, ...)."""

    id: int
    status: Status = "unknown"
    actual_status: str | None = None
    gpu_name: str | None = None
    num_gpus: int | None = None
    gpu_ram: float | None = None
    cpu_cores: float | None = None
    cpu_ram: float | None = None
    disk_space: float | None = None
    dph_total: float | None = None
    total_dph: float | None = None
    public_ipaddr: str | None = None
    ssh_host: str | None = None
    ssh_port: int | str | None = None
    start_date: str | None = None
    label: str | None = None
    ports: dict[str, Any] | None = None
    geolocation: str | None = None
    # Additive fields of the local control plane (the race finds a lost create by them).
    offer_id: int | str | None = None
    machine_id: str | None = None

    @property
    def actual(self) -> str:
        """The actual state (`actual_status`, else the intended `status`), lower case."""
        return (self.actual_status or self.status or "unknown").lower()

    @property
    def is_paused(self) -> bool:
        """Meant to be paused: the provider's intended state is `stopped` (quirk 16)."""
        return self.status.lower() == "stopped"

    @property
    def display_status(self) -> str:
        """The status shown to people: `paused` for a stopped instance, else the actual one."""
        return "paused" if self.is_paused else self.actual

    @property
    def is_running(self) -> bool:
        """Running for real: the actual state is `running` (not only the intended one)."""
        return self.actual == "running"

    @property
    def is_failed(self) -> bool:
        """The machine reached a state from which it never boots by itself."""
        return self.actual in INSTANCE_FAILED_STATUSES

    @property
    def hourly_price(self) -> float | None:
        """$/h with a CPU standby (`total_dph`), else the machine's (`dph_total`)."""
        return self.total_dph or self.dph_total

    def host_port(self, port: str) -> tuple[str | None, str | None]:
        """The host address and port a container port (`22/tcp`) is mapped to, if any."""
        mapping = (self.ports or {}).get(port)
        if isinstance(mapping, list) and mapping and isinstance(mapping[0], dict):
            host, number = mapping[0].get("HostIp"), mapping[0].get("HostPort")
            return (str(host) if host else None, str(number) if number else None)
        return (None, None)

    @property
    def ssh_command(self) -> str | None:
        """`ssh -p PORT root@HOST` for an instance that reports its SSH endpoint."""
        host = self.ssh_host or self.public_ipaddr
        port: object = self.ssh_port or self.host_port("22/tcp")[1]
        if not host:
            return None
        return f"ssh -p {port} root@{host}" if port else f"ssh root@{host}"


class Offer(WireModel):
    """A GPU offer (contract §3.1); `id` is what `POST /instances` takes as `offer_id`."""

    id: int
    gpu_name: str | None = None
    num_gpus: int | None = None
    gpu_ram: float | None = None
    cpu_cores: float | None = None
    cpu_ram: float | None = None
    disk_space: float | None = None
    inet_down: float | None = None
    inet_up: float | None = None
    dph_total: float | None = None
    min_bid: float | None = None  # local control plane: the spot price floor
    geolocation: str | None = None
    reliability: float | None = None
    machine_id: str | None = None
    is_blacklisted: bool = False
    blacklist_reason: str | None = None
    success_rate: float | None = None
    total_attempts: int | None = None
    reliability_status: str | None = None


class Attempt(WireModel):
    """One machine attempt of the history (`GET /machines/history/attempts`)."""

    id: int | str | None = None
    provider: str | None = None
    machine_id: str | None = None
    offer_id: str | None = None
    gpu_name: str | None = None
    price_per_hour: float | None = None
    attempted_at: str | None = None
    success: bool = False
    instance_id: str | None = None
    failure_stage: str | None = None
    failure_reason: str | None = None
    time_to_ready_seconds: float | None = None


class MachineStats(WireModel):
    """What the history says about one machine (`/stats`, `/problematic`, `/reliable`)."""

    provider: str | None = None
    machine_id: str | None = None
    total_attempts: int = 0
    successful_attempts: int = 0
    failed_attempts: int = 0
    success_rate: float | None = None
    avg_time_to_ready: float | None = None
    reliability_status: str | None = None
    is_blacklisted: bool = False
    last_seen: str | None = None
    gpu_name: str | None = None


class HistorySummary(WireModel):
    """`GET /machines/history/summary`: totals of a period."""

    period_hours: int | None = None
    provider: str | None = None
    total_attempts: int = 0
    successful: int = 0
    failed: int = 0
    success_rate: float | None = None
    failure_stages: dict[str, int] = {}
    blacklisted_machines: int = 0


class BlacklistEntry(WireModel):
    """A blacklisted machine (`manual`, `auto` or `temporary`); past `expires_at` it is over."""

    id: int | str | None = None
    provider: str | None = None
    machine_id: str
    blacklist_type: str | None = None
    total_attempts: int | None = None
    failed_attempts: int | None = None
    failure_rate: float | None = None
    last_failure_reason: str | None = None
    blacklisted_at: str | None = None
    expires_at: str | float | None = None
    is_active: bool | None = None
    reason: str | None = None
    gpu_name: str | None = None


class BlacklistCheck(WireModel):
    """`GET /blacklist/check/{provider}/{machine_id}`."""

    is_blacklisted: bool = False
    info: BlacklistEntry | None = None


class ServerlessPolicy(WireModel):
    """An instance's serverless policy: `GET /serverless/status/{id}` or an entry of
    `GET /serverless/list` (contract §7.1). The real platform returns neither `gpu_threshold`
    nor `keep_warm`; the local control plane adds them, and `webhook_url` (never the secret)."""

    instance_id: int
    mode: str | None = None
    is_paused: bool = False
    idle_timeout_seconds: int | None = None
    current_gpu_util: float | None = None
    idle_since: str | None = None
    will_pause_at: str | bool | None = None
    total_savings_usd: float | None = None
    avg_cold_start_seconds: float | None = None
    last_checkpoint_id: str | None = None
    # Additive fields of the local control plane.
    status: str | None = None  # active | paused | wake_failed
    gpu_threshold: float | None = None
    keep_warm: bool | None = None
    max_price: float | None = None
    webhook_url: str | None = None
    last_wake_error: str | None = None

    @property
    def state(self) -> str:
        """`paused` (or the server's word for it, e.g. `wake_failed`), `idle` (below the
        threshold, counting down) or `active`."""
        if self.is_paused:
            return self.status if self.status and self.status != "active" else "paused"
        return "idle" if self.idle_since else "active"


class ServerlessWake(WireModel):
    """`POST /serverless/wake/{id}`: `resumed` with the measured cold start, or
    `already_running`."""

    instance_id: int | None = None
    status: Status = "unknown"
    cold_start_seconds: float | None = None
    mode: str | None = None
    method: str | None = None
    ssh_host: str | None = None
    ssh_port: int | str | None = None
    checkpoint_restored: bool | None = None


class Finetune(WireModel):
    """A fine-tune job (contract §6.4). `config` holds the nested hyper-parameters as stored
    (plus `base_model` and `output_dir`); progress fields move while it trains."""

    id: str
    user_id: str | None = None
    name: str | None = None
    status: Status = "unknown"
    base_model: str | None = None
    dataset_source: str | None = None
    dataset_path: str | None = None
    dataset_format: str | None = None
    gpu_type: str | None = None
    num_gpus: int | None = None
    config: dict[str, Any] = {}
    current_epoch: int = 0
    current_step: int = 0
    total_steps: int = 0
    loss: float | None = None
    progress_percent: float = 0.0
    created_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    output_model_path: str | None = None
    error_message: str | None = None

    @property
    def is_finished(self) -> bool:
        """A final status: completed, failed or cancelled."""
        return self.status in FINETUNE_FINISHED_STATUSES

    @property
    def is_failed(self) -> bool:
        """Ended without completing: failed or cancelled."""
        return self.status in FINETUNE_FAILED_STATUSES


class FinetunePage(WireModel):
    """`GET /finetune/jobs`: the fine-tunes (newest first) and how many there are."""

    jobs: list[Finetune] = []
    count: int | None = None


class FinetuneModel(WireModel):
    """A base model fine-tunes may start from (`GET /finetune/models`, contract §6.2)."""

    id: str
    name: str | None = None
    parameters: str | None = None
    min_vram: str | None = None
    recommended_gpu: str | None = None
    category: str | None = None
    training_speed: str | None = None


class FinetunePreset(WireModel):
    """A named bundle of hyper-parameters (`GET /finetune/presets`, local control plane)."""

    name: str
    description: str | None = None
    config: dict[str, Any] = {}


class DatasetUpload(WireModel):
    """The answer to `POST /finetune/jobs/upload-dataset`: where the server keeps the file
    (`dataset_path`, for `dataset_source=upload`); the local control plane adds what it found."""

    success: bool = True
    dataset_path: str
    records: int | None = None
    format: str | None = None
    sha256: str | None = None
