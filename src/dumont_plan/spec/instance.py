"""`instances:` — a long-lived GPU machine, provisioned by the wizard race."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from dumont_plan.spec.common import Lifecycle, SpecModel


class InstanceSpec(SpecModel):
    """An instance: created by racing several offers, kept running or paused as declared."""

    # Attributes other resources may reference as `${instance.NAME.ATTR}`.
    REF_ATTRS: ClassVar[frozenset[str]] = frozenset(
        {"id", "name", "status", "ssh_host", "ssh_port", "public_ipaddr", "gpu_name"}
    )

    gpu_name: str | None = Field(None, description="GPU model (any GPU when unset).")
    num_gpus: int = Field(1, ge=1, le=8, description="Number of GPUs (1-8).")
    speed_tier: Literal["slow", "medium", "fast", "ultra"] = Field(
        "fast", description="Network tier: slow, medium, fast or ultra."
    )
    max_price: float = Field(2.0, gt=0, description="Highest on-demand $/h accepted.")
    region: Literal["global", "US", "EU", "ASIA"] = Field(
        "global", description="Region: global, US, EU or ASIA."
    )
    disk_space: float = Field(50, ge=10, description="Disk in GB (at least 10).")
    image: str | None = Field(None, description="Container image (the platform default if unset).")
    label: str | None = Field(None, description="Free-text label shown in listings.")
    state: Literal["running", "paused"] = Field(
        "running", description="Desired state; a change pauses or resumes in place."
    )
    models: list[str] = Field(
        default_factory=list, description="Ollama models to install once running."
    )
    wait: Literal["none", "running"] = Field(
        "running", description="What `apply` waits for after creating the instance."
    )
    depends_on: list[str] = Field(
        default_factory=list, description="Addresses (`kind.name`) to apply before this one."
    )
    lifecycle: Lifecycle = Field(
        default_factory=Lifecycle,
        description="Guards on changes: `prevent_destroy`, `ignore_changes`.",
    )
