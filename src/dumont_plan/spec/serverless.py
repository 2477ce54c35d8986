"""`serverless:` — an instance's auto-pause policy: paused when its GPU is idle, woken on demand."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from dumont_plan.spec.common import REF_RE, Lifecycle, SpecModel

INSTANCE_RULE = "write instance: ${instance.NAME.id} (an instance of this spec) or an instance id"


class WebhookSpec(SpecModel):
    """Where the control plane POSTs the policy's events (paused, woken, wake_failed)."""

    url: str = Field(..., description="http(s) URL that receives each event as signed JSON.")
    secret: str | None = Field(
        None,
        description=(
            "Signing key (HMAC-SHA256 of timestamp and body); write `${secret.NAME}`, never "
            "the value."
        ),
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        text = value.strip()
        if not text.startswith(("http://", "https://", "{{")) or len(text) < 10:
            raise ValueError(f"{value!r} is not an http(s) URL; e.g. https://example.org/hook")
        return text

    @field_validator("secret")
    @classmethod
    def _secret_reference(cls, value: str | None) -> str | None:
        if value is None:
            return None
        match = REF_RE.fullmatch(value.strip())
        if match is None or match.group(1) != "secret" or match.group(3) is not None:
            raise ValueError(
                "the webhook secret must be a secret reference, not a value (it would be "
                "stored in the state); write secret: ${secret.NAME}"
            )
        return value.strip()


class ServerlessSpec(SpecModel):
    """A serverless policy: pauses its instance when idle (mode decides how), wakes on demand."""

    # Attributes other resources may reference as `${serverless.NAME.ATTR}`.
    REF_ATTRS: ClassVar[frozenset[str]] = frozenset({"id", "mode"})
    # One policy per instance (the loader checks that no two resources share one).
    UNIQUE_FIELDS: ClassVar[tuple[str, ...]] = ("instance",)

    instance: int | str = Field(
        ...,
        description=(
            "The instance it governs: `${instance.NAME.id}`, or the id of an instance this "
            "spec does not manage. One policy per instance."
        ),
    )
    mode: Literal["fast", "economic", "spot"] = Field(
        "spot",
        description=(
            "`fast`: processes frozen, memory kept, wakes in under a second; `economic`: "
            "stopped, disk kept, wakes in seconds; `spot`: economic, and the machine is "
            "released to the spot market while paused (wakes by bidding again)."
        ),
    )
    idle_timeout_seconds: int = Field(
        10, ge=2, le=3600, description="Seconds below `gpu_threshold` before pausing (2-3600)."
    )
    gpu_threshold: float = Field(
        5.0, ge=0, le=100, description="GPU utilisation (%) under which the instance is idle."
    )
    keep_warm: bool = Field(False, description="Never pause automatically (wake still works).")
    max_price: float | None = Field(
        None,
        gt=0,
        le=1000,
        description=(
            "`spot`: the most $/h a wake bids for a machine (unset: the instance's on-demand "
            "price when the policy is enabled)."
        ),
    )
    webhook: WebhookSpec | None = Field(
        None, description="Signed POSTs on paused, woken and wake_failed (`url`, `secret`)."
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
    def _instance_reference(cls, value: int | str) -> int | str:
        if isinstance(value, int):
            if value < 0:
                raise ValueError(f"instance id {value} is negative; {INSTANCE_RULE}")
            return value
        text = value.strip()
        if text.isdigit():
            return int(text)
        match = REF_RE.fullmatch(text)
        if match is None:
            raise ValueError(f"{value!r} names no instance; {INSTANCE_RULE}")
        kind, attr = match.group(1), match.group(3)
        if kind not in ("instance", "instances") or attr != "id":
            raise ValueError(f"{value} is not an instance's id; {INSTANCE_RULE}")
        return text
