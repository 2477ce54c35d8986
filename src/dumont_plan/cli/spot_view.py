"""What `dumont spot` shows and how it waits: rows, fields, the status line, API refusals.

Shared by the spot commands (`cli/spot.py`); the templates' own are in `cli/spot_templates.py`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from dumont_plan.apply.waits import wait_for
from dumont_plan.cli.output import StatusLine, console, err_console, print_fields, print_table
from dumont_plan.client import DumontClient
from dumont_plan.client.base import error_message, with_field_problems
from dumont_plan.errors import (
    BadRequestError,
    DumontError,
    NotFoundError,
    UnprocessableError,
    WaitFailedError,
    WaitTimeoutError,
)
from dumont_plan.wire import is_loopback
from dumont_plan.wire_models.spot import SpotInstance, SpotPricing

LIST_COLUMNS = (
    "instance_id",
    "state",
    "gpu",
    "bid",
    "max_price",
    "region",
    "failovers",
    "auto_failover",
    "template_id",
)
STATUS_FIELDS = (
    "instance_id",
    "deployment_id",
    "state",
    "template_id",
    "gpu_name",
    "region",
    "bid_price",
    "max_price",
    "auto_failover",
    "failover_count",
    "last_failover_at",
    "access",
)
OFFER_COLUMNS = ("gpu_name", "min_bid", "region", "inet_down", "machine_id")


def parse_instance_id(value: str, where: str) -> int:
    """An instance id typed by a person; one clear line when it is not a whole number."""
    text = value.strip()
    if not text.isdigit():
        raise DumontError(
            f"{where}: instance id {value!r} is not a number", "use an id from `dumont spot list`"
        )
    return int(text)


@contextmanager
def reworded(where: str, missing: str, missing_hint: str, refused_hint: str) -> Iterator[None]:
    """A refusal of the API in the user's words: the command, what it did not find (404) or the
    server's reason (400; a 422's field problems), and what to do next."""
    try:
        yield
    except NotFoundError as exc:
        raise NotFoundError(
            f"{where}: {missing} (or it is not yours)",
            missing_hint,
            status_code=exc.status_code,
            body=exc.body,
        ) from exc
    except BadRequestError as exc:
        raise BadRequestError(
            f"{where}: {error_message(exc.body, exc.message)}",
            refused_hint,
            status_code=exc.status_code,
            body=exc.body,
        ) from exc
    except UnprocessableError as exc:  # the server's words name the field and the fix
        raise UnprocessableError(
            f"{where}: {with_field_problems(exc.body, error_message(exc.body, exc.message))}",
            status_code=exc.status_code,
            body=exc.body,
        ) from exc


def about_instance(instance_id: int, where: str) -> AbstractContextManager[None]:
    """`reworded` for a spot instance."""
    return reworded(
        where,
        f"no spot instance {instance_id}",
        "see yours with `dumont spot list`",
        f"see it with `dumont spot status {instance_id}`",
    )


def money(value: float | None) -> str | None:
    return f"${value:.3f}/h" if value is not None else None


def access_text(spot: SpotInstance) -> str | None:
    """How to run a command on it: its `ssh` line, or on a local control plane (an SSH
    endpoint on loopback, where no SSH server listens) `dumont instance exec`."""
    if not spot.ssh_host:
        return None
    if is_loopback(spot.ssh_host):
        return f"dumont instance exec {spot.instance_id} -- COMMAND"
    return f"ssh -p {spot.ssh_port} root@{spot.ssh_host}" if spot.ssh_port else spot.ssh_host


def list_row(spot: SpotInstance) -> dict[str, object]:
    return {
        "instance_id": spot.instance_id,
        "state": spot.state,
        "gpu": spot.gpu_name,
        "bid": money(spot.bid_price),
        "max_price": money(spot.max_price),
        "region": spot.region,
        "failovers": spot.failover_count,
        "auto_failover": spot.auto_failover,
        "template_id": spot.template_id,
    }


def print_status(spot: SpotInstance) -> None:
    """The contract's fields in a fixed order, then any other field the server sent."""
    raw = spot.raw
    shown = {**raw, "access": access_text(spot)}
    shown["bid_price"] = money(spot.bid_price)
    shown["max_price"] = money(spot.max_price)
    extras = [k for k in raw if k not in STATUS_FIELDS and k not in ("ssh_host", "ssh_port")]
    print_fields(shown, [*STATUS_FIELDS, *(k for k in extras if raw[k] is not None)])


def state_text(spot: SpotInstance) -> str:
    state = spot.state
    if state == "active" and not spot.is_ready:
        state = f"active, its machine {spot.instance_status or 'booting'}"
    text = f"spot instance {spot.instance_id}: {state}"
    if spot.gpu_name:
        text += f", {spot.gpu_name}"
    if spot.bid_price is not None:
        text += f" at {money(spot.bid_price)}"
    return text


def wait_active(
    client: DumontClient, instance_id: int, timeout: float, where: str, poll: float = 1.0
) -> SpotInstance:
    """Poll the status until it is `active` on a machine that runs (exit 5 when it ends
    `failed` or `stopped`, 4 after `timeout`)."""
    with StatusLine(err_console) as line, about_instance(instance_id, where):
        result = wait_for(
            lambda: client.spot.status(instance_id),
            done=lambda s: s.is_ready,
            failed=lambda s: s.is_failed or s.state == "stopped",
            timeout=timeout,
            on_tick=lambda s: line.update(state_text(s)),
            poll=poll,
        )
    spot = result.state
    if result.outcome == "timeout":
        raise WaitTimeoutError(
            f"{where}: spot instance {instance_id} is still {spot.state} after {timeout:g}s",
            f"check it with `dumont spot status {instance_id}`",
        )
    if result.outcome == "failed":
        raise WaitFailedError(
            f"{where}: spot instance {instance_id} ended {spot.state}",
            f"see `dumont spot status {instance_id}`; deploy again from its template "
            f"{spot.template_id}",
        )
    return spot


def print_pricing(pricing: SpotPricing) -> None:
    raw = pricing.raw
    shown: dict[str, object] = {
        **raw,
        "cheapest_price": money(pricing.cheapest_price),
        "average_price": money(pricing.average_price),
        "estimated_ondemand": money(pricing.estimated_ondemand),
    }
    if pricing.savings_vs_ondemand is not None:
        shown["savings_vs_ondemand"] = f"{pricing.savings_vs_ondemand:g}%"
    keys = [k for k in raw if k != "top_offers"]
    print_fields(shown, keys)
    if pricing.top_offers:
        console.print("")
        rows = ({**o.raw, "min_bid": money(o.min_bid)} for o in pricing.top_offers)
        print_table(rows, OFFER_COLUMNS, title="Cheapest offers")
