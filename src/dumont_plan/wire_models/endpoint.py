"""The read model of a serverless endpoint (contract §7.3; the local control plane's additive
`command`, `concurrency`, `idle_timeout_seconds` and `url`)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from dumont_plan.wire_models import Status, WireModel


class ServerlessEndpoint(WireModel):
    """An endpoint: its workload (`command`, `docker_image`, `gpu_name`), how it scales
    (`auto_scaling.min_instances`/`max_instances`, `concurrency`, `idle_timeout_seconds`)
    and its request path `url`."""

    id: str
    name: str | None = None
    status: Status = "unknown"
    gpu_name: str | None = None
    machine_type: str | None = None
    docker_image: str | None = None
    command: str | None = None
    concurrency: int | None = None
    idle_timeout_seconds: int | None = None
    url: str | None = None
    created_at: str | None = None
    auto_scaling: dict[str, Any] = Field(default_factory=dict)

    @property
    def min_instances(self) -> int | None:
        value = self.auto_scaling.get("min_instances")
        return value if isinstance(value, int) else None

    @property
    def max_instances(self) -> int | None:
        value = self.auto_scaling.get("max_instances")
        return value if isinstance(value, int) else None
