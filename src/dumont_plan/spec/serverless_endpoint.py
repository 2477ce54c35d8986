"""`serverless_endpoints:` — a request-driven endpoint: its command serves HTTP on `$PORT` in
workers that scale between `min_instances` and `max_instances` (0: scale to zero)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from dumont_plan.spec.common import Lifecycle, SpecModel

DEFAULT_IMAGE = "pytorch/pytorch:2.1.0-cuda12.1-cudnn8-runtime"


class ServerlessEndpointSpec(SpecModel):
    """A serverless endpoint (`dumont serverless endpoint`): scaled with its requests."""

    # Attributes other resources may reference as `${serverless_endpoint.NAME.ATTR}`.
    REF_ATTRS: ClassVar[frozenset[str]] = frozenset({"id", "url", "name", "gpu_name"})

    command: str = Field(
        ...,
        min_length=1,
        description="Shell command serving HTTP on `$PORT` (what a worker runs). Replaces.",
    )
    image: str = Field(
        DEFAULT_IMAGE, min_length=1, max_length=500, description="Image a real cloud runs."
    )
    gpu: str = Field("RTX 4090", min_length=1, max_length=100, description="GPU model per worker.")
    machine_type: Literal["spot", "on-demand"] = Field(
        "spot", description="`spot` or `on-demand` (prices the workers)."
    )
    min_instances: int = Field(
        0, ge=0, le=10, description="Workers kept running when idle (0: scale to zero)."
    )
    max_instances: int = Field(3, ge=1, le=50, description="Most workers under load.")
    idle_timeout_seconds: int | None = Field(
        None, ge=1, le=3600, description="Idle seconds before a worker above the minimum stops."
    )
    concurrency: int | None = Field(
        None, ge=1, le=1000, description="Requests in flight per worker before scaling out."
    )
    depends_on: list[str] = Field(
        default_factory=list, description="Addresses (`kind.name`) to apply before this one."
    )
    lifecycle: Lifecycle = Field(
        default_factory=Lifecycle,
        description="Guards on changes: `prevent_destroy`, `ignore_changes`.",
    )

    @field_validator("command")
    @classmethod
    def _command(cls, value: str) -> str:
        if not value.strip() or "\0" in value:
            raise ValueError("give a non-empty command without NUL bytes, e.g. ./serve")
        return value

    @model_validator(mode="after")
    def _range(self) -> ServerlessEndpointSpec:
        if self.min_instances > self.max_instances:
            raise ValueError(
                f"min_instances {self.min_instances} is above max_instances "
                f"{self.max_instances}; lower min_instances or raise max_instances"
            )
        return self
