"""What the spot dashboard draws, from one user's own rows: interruptions over time, failovers
and their time to recover, spot spend against the on-demand price of the same machine-hours,
and the market's price history per GPU. Times are ISO `at` and epoch seconds `t`.

The on-demand equivalent of a spot instance's cost is that cost divided by its machine's spot
factor: the simulated market prices a machine's minimum bid at a fixed fraction of its
on-demand price at every instant, so this is exactly what the same hours would have cost
on demand (the few hours billed at the storage rate while paused aside).
"""

from __future__ import annotations

import time
from typing import Any

from dumont_plan.server.context import AppState
from dumont_plan.server.provider.history import iso
from dumont_plan.server.provider.instances import instance_json, market_of
from dumont_plan.server.provider.spot_market import price_history

BUCKETS = 24
DEFAULT_GPUS = ("RTX 4090", "RTX 3090", "A100", "H100")


def events(state: AppState, user_id: int, hours: float) -> dict[str, Any]:
    now = time.time()
    since = now - hours * 3600
    rows = state.store.query(
        "SELECT * FROM spot_events WHERE user_id = ? AND at >= ? ORDER BY at, id",
        (user_id, since),
    )
    width = hours * 3600 / BUCKETS
    counts = [0] * BUCKETS
    interruptions = []
    failovers = []
    for r in rows:
        if r["kind"] == "interruption":
            counts[min(BUCKETS - 1, int((float(r["at"]) - since) / width))] += 1
            interruptions.append(
                {
                    "at": iso(float(r["at"])),
                    "t": float(r["at"]),
                    "deployment_id": r["deployment_id"],
                    "instance_id": r["instance_id"],
                    "machine_id": r["machine_id"],
                    "gpu_name": r["gpu_name"],
                    "reason": r["reason"],
                    "work_lost_seconds": r["work_lost_seconds"],
                }
            )
        elif r["kind"] in ("failover", "failover_failed"):
            failovers.append(
                {
                    "at": iso(float(r["at"])),
                    "t": float(r["at"]),
                    "deployment_id": r["deployment_id"],
                    "succeeded": r["kind"] == "failover",
                    "old_instance_id": r["instance_id"],
                    "new_instance_id": r["new_instance_id"],
                    "gpu_name": r["gpu_name"],
                    "reason": r["reason"],
                    "time_to_recover_seconds": r["time_to_recover_seconds"],
                }
            )
    recovered = [f["time_to_recover_seconds"] for f in failovers if f["time_to_recover_seconds"]]
    return {
        "period_hours": hours,
        "bucket_seconds": width,
        "interruptions_over_time": [
            {"start": iso(since + i * width), "t": since + i * width, "count": counts[i]}
            for i in range(BUCKETS)
        ],
        "interruptions": interruptions,
        "failovers": failovers,
        "totals": {
            "interruptions": len(interruptions),
            "failovers": sum(1 for f in failovers if f["succeeded"]),
            "failed_failovers": sum(1 for f in failovers if not f["succeeded"]),
            "average_time_to_recover_seconds": (
                round(sum(recovered) / len(recovered), 3) if recovered else None
            ),
        },
    }


def spend(state: AppState, user_id: int) -> dict[str, Any]:
    """Cumulative spot cost and its on-demand equivalent, one point per instance, in the
    order the instances ended (a live one ends now)."""
    now = time.time()
    rows = state.store.query(
        "SELECT i.* FROM instances i JOIN spot_instances s ON s.instance_id = i.id "
        "WHERE s.user_id = ? AND i.user_id = ?",
        (user_id, user_id),
    )
    market = market_of(state)
    items = []
    for row in rows:
        cost = float(instance_json(state, row, now)["total_cost"])
        machine = market.by_offer(int(row["offer_id"]))
        factor = machine.spot_factor if machine else 1.0
        end = float(row["deleted_at"]) if row["deleted_at"] is not None else now
        items.append((end, cost, cost / factor if factor > 0 else cost))
    items.sort()
    series = []
    spot_total = ondemand_total = 0.0
    for end, cost, ondemand in items:
        spot_total += cost
        ondemand_total += ondemand
        series.append(
            {
                "at": iso(end),
                "t": end,
                "spot": round(spot_total, 6),
                "on_demand": round(ondemand_total, 6),
            }
        )
    saved = ondemand_total - spot_total
    return {
        "instances": len(items),
        "spot_cost": round(spot_total, 6),
        "on_demand_cost": round(ondemand_total, 6),
        "savings": round(saved, 6),
        "savings_percent": round(saved / ondemand_total * 100, 1) if ondemand_total > 0 else 0.0,
        "series": series,
    }


def prices(
    state: AppState, user_id: int, gpu_name: str | None, hours: float, points: int
) -> dict[str, Any]:
    """Price history of `gpu_name`, else of the GPUs of the user's deployments (else a few
    common ones)."""
    if gpu_name:
        gpus = [gpu_name]
    else:
        rows = state.store.query(
            "SELECT DISTINCT i.gpu_name FROM instances i JOIN spot_instances s "
            "ON s.instance_id = i.id WHERE s.user_id = ? ORDER BY i.gpu_name",
            (user_id,),
        )
        gpus = [str(r["gpu_name"]) for r in rows] or list(DEFAULT_GPUS)
    series = price_history(state, gpus, hours, points)
    return {"period_hours": hours, "gpus": list(series), "series": series}
