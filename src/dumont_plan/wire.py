"""Constants of the Dumont API v1 wire format shared by the client and the local server.

A leaf module (standard library only): `client/` and `server/` both import it, neither
imports the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

# Contract §5.4: every status a job can report, in lifecycle order.
JobStatus = Literal[
    "pending",
    "provisioning",
    "starting",
    "running",
    "completing",
    "completed",
    "failed",
    "cancelled",
    "timeout",
]
JOB_STATUSES: tuple[str, ...] = get_args(JobStatus)
# The statuses after which a job never changes again.
FINISHED_JOB_STATUSES = ("completed", "failed", "cancelled", "timeout")


# Instances (contract §3): `status` is the intended state (`running`, `stopped`), `actual_status`
# the actual one.
def instance_actual_status(instance: Mapping[str, Any]) -> str:
    """The actual state of an instance's JSON object (`actual_status`, else `status`), lower
    case: the client's helpers and the instance kind's (pure) status predicates read it."""
    value = instance.get("actual_status") or instance.get("status") or "unknown"
    return str(value).lower()
