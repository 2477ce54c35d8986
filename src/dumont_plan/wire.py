"""Constants of the Dumont API v1 wire format shared by the client and the local server.

A leaf module (standard library only): `client/` and `server/` both import it, neither
imports the other.
"""

from __future__ import annotations

import ipaddress
from typing import Literal, get_args

# Contract §5.4: every status a job can report, in lifecycle order. `scheduled` is additive: a job
# created with a `start_at` (or by a schedule) waits in it until its time, then goes `pending`.
JobStatus = Literal[
    "scheduled",
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

# Contract §6.5: every status a fine-tune job can report (`uploading` is never used).
FinetuneStatus = Literal[
    "pending", "uploading", "queued", "running", "completed", "failed", "cancelled"
]
FINETUNE_STATUSES: tuple[str, ...] = get_args(FinetuneStatus)
FINISHED_FINETUNE_STATUSES = ("completed", "failed", "cancelled")
# Contract §6.3: where a fine-tune's dataset comes from, and the formats it may have.
DatasetSource = Literal["upload", "url", "huggingface", "existing"]
DatasetFormat = Literal["alpaca", "sharegpt", "raw"]


# Names of this machine's loopback interface a local control plane always answers to.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    """Whether a bind address or host name stays on this machine (`localhost`, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# Contract §7.1: serverless auto-pause of an instance. `spot` is the default of
# `POST /serverless/enable/{id}`; the ranges are the enable body's (422 outside them).
ServerlessMode = Literal["fast", "economic", "spot"]
SERVERLESS_MODES: tuple[str, ...] = get_args(ServerlessMode)
SERVERLESS_DEFAULT_MODE = "spot"
IDLE_TIMEOUT_RANGE = (2, 3600)  # idle_timeout_seconds
GPU_THRESHOLD_RANGE = (0.0, 100.0)  # gpu_threshold, percent
