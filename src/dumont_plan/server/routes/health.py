"""`GET /health`: liveness, version and the additive capabilities of this server."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from dumont_plan import __version__

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
    "jobs.timeout-status",
    "jobs.offset",
    "offers.all-filters",
    "instances.use-spot",
    "instances.delete-reason",
    "history.per-user",
]

router = APIRouter()


@router.get("/health", tags=["meta"])
def health() -> dict[str, Any]:
    return {
        "status": "healthy",
        "version": __version__,
        "service": "dumont-local-control-plane",
        "capabilities": CAPABILITIES,
    }
