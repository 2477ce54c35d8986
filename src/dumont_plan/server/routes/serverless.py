"""`/api/v1/serverless`: per-instance auto-pause (contract §7.1, §7.2) and the `/instances`
aliases (§7.4). Behaviour in provider/serverless.py and provider/serverless_pause.py.

Every route but `GET /serverless/status` and `GET /serverless/pricing` needs a token and
addresses only the caller's instances (404 otherwise). Additive: `max_price`, `webhook_url`
and `webhook_secret` on enable (the secret is never returned), `configured` in its answer,
`GET /serverless/webhooks/{instance_id}` (the delivery log), per-mode figures of the caller's
instances in `/pricing`. A wake that fails (spot: nothing under `max_price`) is a 409 with
the reason (the real platform answers 404).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dumont_plan.errors import ServerlessError
from dumont_plan.server.context import StateDep, UserDep
from dumont_plan.server.provider import serverless, serverless_pause, webhooks
from dumont_plan.server.provider.serverless import PolicySpec
from dumont_plan.server.routes.instances import SQLITE_INTEGER, optional_user

router = APIRouter(prefix="/serverless", tags=["serverless"])
aliases = APIRouter(prefix="/instances", tags=["serverless"])

Mode = Literal["fast", "economic", "spot"]
URL_MAX = 2048


def _http(exc: ServerlessError) -> HTTPException:
    return HTTPException(exc.status, exc.message)


def _answer(call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`call()`, a refusal answered with its status and message."""
    try:
        return call()
    except ServerlessError as exc:
        raise _http(exc) from exc


def _stored_id(instance_id: int) -> int:
    """An id SQLite can hold (no instance has another: 404, not an overflow in the query)."""
    if instance_id not in SQLITE_INTEGER:
        raise ServerlessError(404, f"Instance {instance_id} not found")
    return instance_id


class WebhookFields(BaseModel):
    model_config = ConfigDict(str_max_length=URL_MAX)

    max_price: float | None = Field(
        None,
        gt=0,
        le=1000,
        allow_inf_nan=False,
        description="spot mode: the most $/h a wake bids (default: the machine's on-demand "
        "price at enable). Additive.",
    )
    webhook_url: str | None = Field(
        None, description="http(s) URL that receives signed JSON events. Additive."
    )
    webhook_secret: str | None = Field(
        None,
        min_length=8,
        max_length=256,
        description="HMAC-SHA256 key of X-Dumont-Signature; stored sealed, never returned. "
        "Additive.",
    )

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("use an http:// or https:// URL with a host")
        if parts.username is not None or parts.password is not None:
            # it would be stored and shown in clear; deliveries are signed instead
            raise ValueError(
                "put no user:password@ in the URL (it would be kept and shown in clear); "
                "set webhook_secret and check the X-Dumont-Signature header instead"
            )
        return value.strip()

    @model_validator(mode="after")
    def _secret_needs_url(self) -> WebhookFields:
        if self.webhook_secret is not None and self.webhook_url is None:
            raise ValueError("webhook_secret needs webhook_url")
        return self


class EnableRequest(WebhookFields):
    mode: Mode = Field("spot", description="fast (frozen, <1 s), economic (stopped), spot.")
    idle_timeout_seconds: int = Field(10, ge=2, le=3600, description="Idle seconds to pause.")
    gpu_threshold: float = Field(
        5.0, ge=0, le=100, allow_inf_nan=False, description="Idle below this utilisation (%)."
    )
    keep_warm: bool = Field(False, description="Never pause automatically.")


class AliasEnableRequest(WebhookFields):
    """§7.4's body: default mode economic, `cpu_standby` forces fast, a timeout of 0 takes
    `idle_threshold`. Unlike the real platform, ranges are checked (422)."""

    mode: Mode = "economic"
    idle_timeout_seconds: int = Field(10, ge=0, le=3600, description="0: idle_threshold.")
    idle_threshold: int = Field(60, ge=2, le=3600)
    gpu_threshold: float = Field(5.0, ge=0, le=100, allow_inf_nan=False)
    keep_warm: bool = False
    cpu_standby: bool = Field(False, description="true: fast mode.")

    @field_validator("idle_timeout_seconds")
    @classmethod
    def _timeout(cls, value: int) -> int:
        if value == 1:
            raise ValueError("use 0 (idle_threshold) or 2-3600")
        return value


NO_BODY = EnableRequest()
NO_ALIAS_BODY = AliasEnableRequest()


def _spec(body: EnableRequest | AliasEnableRequest, mode: str, timeout: int) -> PolicySpec:
    return PolicySpec(
        mode=mode,
        idle_timeout_seconds=timeout,
        gpu_threshold=body.gpu_threshold,
        keep_warm=body.keep_warm,
        max_price=body.max_price,
        webhook_url=body.webhook_url,
        webhook_secret=body.webhook_secret,
    )


@router.post("/enable/{instance_id}")
def enable(
    instance_id: int, state: StateDep, user: UserDep, body: EnableRequest = NO_BODY
) -> dict[str, Any]:
    """The body is optional: every field has its default."""
    spec = _spec(body, body.mode, body.idle_timeout_seconds)
    return _answer(lambda: serverless.enable(state, user.id, _stored_id(instance_id), spec))


@router.post("/disable/{instance_id}")
def disable(instance_id: int, state: StateDep, user: UserDep) -> dict[str, Any]:
    return _answer(lambda: serverless.disable(state, user.id, _stored_id(instance_id)))


@router.get("/status")
def public_status(request: Request, state: StateDep) -> dict[str, Any]:
    """Public; the counts are the caller's own with a token, zero without."""
    user = optional_user(request, state)
    return serverless.public_status(state, user.id if user else None)


@router.get("/pricing")
def pricing(request: Request, state: StateDep) -> dict[str, Any]:
    """Public static model; with a token also the caller's instances per mode (additive)."""
    user = optional_user(request, state)
    return serverless.pricing(state, user.id if user else None)


@router.get("/status/{instance_id}")
def status(instance_id: int, state: StateDep, user: UserDep) -> dict[str, Any]:
    return _answer(lambda: serverless.status(state, user.id, _stored_id(instance_id)))


@router.get("/list")
def list_(state: StateDep, user: UserDep) -> dict[str, Any]:
    return serverless.list_policies(state, user.id)


@router.post("/wake/{instance_id}")
def wake(instance_id: int, state: StateDep, user: UserDep) -> dict[str, Any]:
    return _answer(lambda: serverless_pause.wake(state, user.id, _stored_id(instance_id)))


@router.post("/inference-start/{instance_id}")
def inference_start(instance_id: int, state: StateDep, user: UserDep) -> dict[str, Any]:
    return _answer(lambda: serverless.inference_start(state, user.id, _stored_id(instance_id)))


@router.post("/inference-complete/{instance_id}")
def inference_complete(instance_id: int, state: StateDep, user: UserDep) -> dict[str, Any]:
    return _answer(lambda: serverless.inference_complete(state, user.id, _stored_id(instance_id)))


@router.get("/webhooks/{instance_id}")
def webhook_log(instance_id: int, state: StateDep, user: UserDep) -> dict[str, Any]:
    """The webhook deliveries of one of your instances (additive)."""
    _answer(lambda: serverless.own_instance(state, user.id, _stored_id(instance_id)))
    found = webhooks.deliveries(state, user.id, instance_id)
    return {"instance_id": instance_id, "count": len(found), "deliveries": found}


# ---------------------------------------------------------------------------- §7.4 aliases


@aliases.post("/{instance_id}/serverless/enable")
def alias_enable(
    instance_id: int, state: StateDep, user: UserDep, body: AliasEnableRequest = NO_ALIAS_BODY
) -> dict[str, Any]:
    mode = "fast" if body.cpu_standby else body.mode
    spec = _spec(body, mode, body.idle_timeout_seconds or body.idle_threshold)
    answer = _answer(lambda: serverless.enable(state, user.id, _stored_id(instance_id), spec))
    answer.pop("behavior", None)
    return answer


@aliases.post("/{instance_id}/serverless/disable")
def alias_disable(instance_id: int, state: StateDep, user: UserDep) -> dict[str, Any]:
    """200 also when not configured (`status: not_found`); another's instance is a 404."""
    _answer(lambda: serverless.own_instance(state, user.id, _stored_id(instance_id)))
    if not serverless.configured(state, user.id, instance_id):
        return {
            "instance_id": instance_id,
            "status": "not_found",
            "message": f"Instance {instance_id} not configured for serverless",
        }
    return _answer(lambda: serverless.disable(state, user.id, instance_id))
