"""`spot_templates:` and `spot_deployments:` — a workspace snapshot and the spot instances that
restore it, moving to a new machine when the market takes theirs back."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from dumont_plan.spec.common import Lifecycle, SpecModel


class SpotTemplateSpec(SpecModel):
    """A spot template: a snapshot of an instance's workspace, made once when it is created."""

    # Attributes other resources may reference as `${spot_template.NAME.ATTR}`.
    REF_ATTRS: ClassVar[frozenset[str]] = frozenset(
        {"id", "template_id", "instance_id", "region", "gpu_name", "size_bytes", "workspace_path"}
    )

    instance: int | str = Field(
        ...,
        description=(
            "The instance whose workspace is snapshotted: `${instance.NAME.id}` (or an id). "
            "A new instance makes a new template."
        ),
    )
    region: str | None = Field(
        None,
        description=(
            "Where its spot machines are rented: US, EU, a country code, global (default: the "
            "instance's own region)."
        ),
    )
    workspace_path: str = Field(
        "/workspace", description="The folder of the instance to snapshot (an absolute path)."
    )
    depends_on: list[str] = Field(
        default_factory=list, description="Addresses (`kind.name`) to apply before this one."
    )
    lifecycle: Lifecycle = Field(
        default_factory=Lifecycle,
        description="Guards on changes: `prevent_destroy`, `ignore_changes`.",
    )

    @field_validator("instance")
    @classmethod
    def _an_instance_id(cls, value: int | str) -> int | str:
        if isinstance(value, str) and "${" not in value and not value.strip().isdigit():
            raise ValueError(
                f"{value!r} is not an instance id; write ${{instance.NAME.id}} or a number"
            )
        return value

    @field_validator("workspace_path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"{value!r} is not an absolute path; write it from /, e.g. /workspace")
        return value


class SpotDeploymentSpec(SpecModel):
    """A spot deployment: an instance bid on the spot market from a template, failed over to a
    new machine (its workspace restored) whenever it is interrupted."""

    # Attributes other resources may reference as `${spot_deployment.NAME.ATTR}`; `instance_id`
    # changes at each failover (the deployment's `id` does not).
    REF_ATTRS: ClassVar[frozenset[str]] = frozenset(
        {
            "id",
            "instance_id",
            "state",
            "gpu_name",
            "region",
            "bid_price",
            "ssh_host",
            "ssh_port",
            "failover_count",
        }
    )

    template: str = Field(
        ...,
        min_length=1,
        description="The template to restore: `${spot_template.NAME.id}` (or a template id).",
    )
    max_price: float = Field(
        1.0, ge=0.01, le=10.0, description="Highest spot bid in $/h (0.01-10)."
    )
    gpu_preference: str | None = Field(
        None, description="GPU model, e.g. `RTX 4090` (the cheapest GPU when unset)."
    )
    auto_failover: bool = Field(
        True, description="Move to a new spot machine when this one is interrupted."
    )
    wait: Literal["none", "active"] = Field(
        "active", description="What `apply` waits for after deploying it."
    )
    depends_on: list[str] = Field(
        default_factory=list, description="Addresses (`kind.name`) to apply before this one."
    )
    lifecycle: Lifecycle = Field(
        default_factory=Lifecycle,
        description="Guards on changes: `prevent_destroy`, `ignore_changes`.",
    )
