"""How `dumont serverless` shows policies, pricing and webhook deliveries to people."""

from __future__ import annotations

from typing import Any

from dumont_plan.cli.output import console, print_table
from dumont_plan.wire_models import ServerlessPolicy

OPTIONAL_ROWS = frozenset({"gpu_threshold", "keep_warm", "webhook"})
LIST_COLUMNS = ("instance", "mode", "state", "gpu_util", "idle_since", "will_pause_at", "savings")
PRICING_COLUMNS = ("plan", "cost_usd", "savings_usd", "savings_percent", "recovery_time")


def money(value: Any) -> str | None:
    return f"${value:.2f}" if isinstance(value, int | float) else None


def percent(value: Any) -> str | None:
    return f"{value:.0f}%" if isinstance(value, int | float) else None


def when(value: Any) -> str | None:
    """A timestamp as the API sent it, shortened to the second; `-` when unset."""
    if value is None or value is False:
        return None
    if value is True:
        return "yes"
    return str(value).replace("T", " ")[:19]


def policy_row(policy: ServerlessPolicy) -> dict[str, object]:
    return {
        "instance": policy.instance_id,
        "mode": policy.mode,
        "state": policy.state,
        "gpu_util": percent(policy.current_gpu_util),
        "idle_since": when(policy.idle_since),
        "will_pause_at": when(policy.will_pause_at),
        "savings": money(policy.total_savings_usd),
    }


LIST_KNOWN = frozenset(
    {
        "instance_id",
        "mode",
        "is_paused",
        "idle_timeout_seconds",
        "current_gpu_util",
        "idle_since",
        "will_pause_at",
        "total_savings_usd",
        "avg_cold_start_seconds",
        "gpu_threshold",
        "keep_warm",
        "webhook_url",
        "last_checkpoint_id",
        "status",
    }
)


def status_fields(policy: ServerlessPolicy) -> tuple[dict[str, Any], list[str]]:
    """`dumont serverless status`'s fields and their order: ours first, then every other
    field the server sent."""
    raw = policy.raw
    cold = policy.avg_cold_start_seconds
    shown = {
        **policy_row(policy),
        "idle_timeout": f"{policy.idle_timeout_seconds}s"
        if policy.idle_timeout_seconds is not None
        else None,
        "gpu_threshold": percent(policy.gpu_threshold),
        "keep_warm": policy.keep_warm,
        "webhook": policy.webhook_url,
        "avg_cold_start": f"{cold:.2f}s" if isinstance(cold, int | float) and cold else None,
    }
    keys = ["instance", "mode", "state", "gpu_util", "idle_timeout", "gpu_threshold"]
    keys += ["keep_warm", "idle_since", "will_pause_at", "savings", "avg_cold_start", "webhook"]
    # The real platform does not report these three: left out rather than shown as unset.
    keys = [k for k in keys if k not in OPTIONAL_ROWS or shown[k] is not None]
    extra = [k for k in raw if k not in LIST_KNOWN]
    return {**shown, **{k: raw[k] for k in extra}}, keys + extra


def print_pricing(answer: dict[str, Any]) -> None:
    """The static monthly model per mode, the idle rates, then the caller's instances."""
    costs = answer.get("monthly_costs")
    rows = []
    if isinstance(costs, dict):
        for name, item in costs.items():
            if isinstance(item, dict):
                rows.append(
                    {
                        "plan": name.removeprefix("serverless_").replace("_", " "),
                        "cost_usd": money(item.get("cost_usd")),
                        "savings_usd": money(item.get("savings_usd")),
                        "savings_percent": percent(item.get("savings_percent")),
                        "recovery_time": item.get("recovery_time"),
                    }
                )
    print_table(rows, PRICING_COLUMNS, title="Monthly cost per mode")
    assumptions = answer.get("assumptions")
    if isinstance(assumptions, dict):
        console.print(
            "Assumptions: " + ", ".join(f"{k}={v}" for k, v in assumptions.items()),
            markup=False,
            soft_wrap=True,
        )
    modes = answer.get("modes")
    if isinstance(modes, dict):
        idle = [
            f"{mode} {hourly(item.get('idle_dph'))}"
            for mode, item in modes.items()
            if isinstance(item, dict)
        ]
        console.print("Idle $/h while paused: " + ", ".join(idle), markup=False)
    if answer.get("recommendation"):
        console.print(f"Recommended: {answer['recommendation']}.", markup=False)
    _print_instance_pricing(answer)


def hourly(value: Any) -> str | None:
    return f"${value:.3f}/h" if isinstance(value, int | float) else None


INSTANCE_PRICING_COLUMNS = (
    "instance",
    "gpu",
    "mode",
    "running",
    "idle",
    "monthly_usd",
    "savings_usd",
    "savings_percent",
)


def _print_instance_pricing(answer: dict[str, Any]) -> None:
    """The local control plane's additive figures for the caller's instances at today's market
    prices: one row per instance and mode (`*`: the mode its policy uses)."""
    items = answer.get("instances")
    if not isinstance(items, list) or not items:
        return
    rows = []
    for item in items:
        modes = item.get("modes") if isinstance(item, dict) else None
        if not isinstance(modes, dict):
            continue
        for mode, figures in modes.items():
            if not isinstance(figures, dict):
                continue
            current = mode == item.get("serverless_mode")
            rows.append(
                {
                    "instance": item.get("instance_id"),
                    "gpu": item.get("gpu_name"),
                    "mode": f"{mode} *" if current else mode,
                    "running": hourly(figures.get("running_dph")),
                    "idle": hourly(figures.get("idle_dph")),
                    "monthly_usd": money(figures.get("cost_usd")),
                    "savings_usd": money(figures.get("savings_usd")),
                    "savings_percent": percent(figures.get("savings_percent")),
                }
            )
    print_table(rows, INSTANCE_PRICING_COLUMNS, title="Your instances at today's market prices")


WEBHOOK_COLUMNS = (
    "created_at",
    "event",
    "status",
    "attempts",
    "last_status_code",
    "last_error",
    "delivered_at",
)


def webhook_row(delivery: dict[str, Any]) -> dict[str, Any]:
    return {
        **delivery,
        "created_at": when(delivery.get("created_at")),
        "delivered_at": when(delivery.get("delivered_at")),
    }
