"""`GET /health`: liveness, version and the additive capabilities of this server."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from dumont_plan import __version__
from dumont_plan.server.context import StateDep
from dumont_plan.server.provider.executors import executor_info
from dumont_plan.server.provider.isolation import isolation_of, process_limit_enforced

# Additive extensions this server offers beyond the real platform's contract.
CAPABILITIES = [
    "auth.revocable-logout",
    "auth.logout-all",
    "auth.login-throttling",
    "idempotency-key",
    "per-user-isolation",
    "jobs.logs-tail",
    "jobs.logs-offset",
    "jobs.log-cap",
    "jobs.outputs",
    "jobs.secrets",
    "jobs.timeout-status",
    "jobs.workdir",
    "jobs.auto-destroy",
    "jobs.max-retries",
    "jobs.start-at",  # CreateJob start_at, status scheduled
    "jobs.schedules",  # /jobs/schedules: cron schedules of jobs
    "jobs.num-nodes",  # CreateJob num_nodes: SkyPilot's nodes, or local ranks
    "jobs.logs-rank",  # GET /jobs/{id}/logs?rank=N: a rank's log
    "disk-limit.workspace",
    "jobs.offset",
    "offers.all-filters",
    "instances.use-spot",
    "instances.delete-reason",
    "instances.exec",
    "history.per-user",
    "state.http-backend",
    "serverless.per-user",
    "serverless.webhooks",
    "serverless.max-price",
    "serverless.pricing-per-instance",
    "serverless.endpoints-run",
    "serverless.endpoints-invoke",
    "agent.status-auth",
    "spot.per-user",
    "spot.interrupt",
    "spot.sync",
    "spot.dashboard",
    "finetune.local-executor",
    "finetune.presets",
    "finetune.use-spot",
    "finetune.outputs",
    "finetune.upload-checks",
    "finetune.list-pagination",
    "settings.provider-key",
]

SERVICE = "dumont-local-control-plane"

router = APIRouter()


@router.get("/health", tags=["meta"])
def health(state: StateDep) -> dict[str, Any]:
    """`isolation.bwrap` or `isolation.none` says how workloads run; `process-limit.enforced`
    or `process-limit.none` whether their process limit holds (not for root's processes);
    `users.single` or `users.multi` whether others may register; `disk-limit.workspace`: a
    job whose workspace grows past `disk_size` in total ends `failed`; `executor.local` or
    `executor.skypilot` what runs jobs, and `executor` its availability (additive)."""
    settings = state.settings
    if settings.real_platform:  # what the real server answers: no capabilities
        return {"status": "healthy", "version": __version__, "service": SERVICE}
    users = "users.multi" if settings.multi_user else "users.single"
    processes = "enforced" if process_limit_enforced(settings) else "none"
    executor = executor_info(state)
    return {
        "status": "healthy",
        "version": __version__,
        "service": SERVICE,
        "capabilities": [
            *CAPABILITIES,
            f"isolation.{isolation_of(settings)}",
            f"process-limit.{processes}",
            users,
            f"executor.{executor['name']}",
        ],
        "executor": executor,
    }
