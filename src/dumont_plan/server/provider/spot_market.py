"""The spot side of the simulated market: spot prices, outbidding, offer choice, pricing.

A machine's spot price is its minimum bid (`Machine.min_bid`, moving with the market's seeded
price curve), unless the test hook `POST /api/v1/_local/market/price` set one for its offer
(a price spike a test schedules; it lasts `seconds` or until cleared).

Outbidding: a spot instance bids its offer's minimum bid when it is deployed. It is outbid when
the machine's spot price has risen more than `OUTBID_MARGIN` above that bid. (The simulation's
prices move on a smooth curve where a real market's move in steps: without a margin, half of the
instances, those deployed while the price rises, would be outbid within seconds. With 5 % they
are outbid after about five minutes of rising prices, and an instance deployed near the peak of
the curve is not.) A spike set by the test hook above the margin outbids at the next pass.

Offers for a spot deploy or a failover: spot offers not rented by anybody, minimum bid at or
below the max price, in the region, of the preferred GPU (any when none), one GPU, not on a
machine the user's history blacklists, and stable: reliability at least `STABLE_RELIABILITY`
(the market's flaky machines, which fail boots, are all below it; the real platform filters the
machines its stability table flags in the same way). Cheapest minimum bid first.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dumont_plan.server.context import AppState
from dumont_plan.server.provider import history
from dumont_plan.server.provider.instances import market_of, rented_offer_ids
from dumont_plan.server.provider.market import Machine
from dumont_plan.server.provider.regions import expand_region, region_matches

OUTBID_MARGIN = 0.05
STABLE_RELIABILITY = 0.95
MAX_SEARCH_PRICE = 10.0
TOP_OFFERS = 10
# Static figures of the contract's comparison (§8.4): GPU, spot and storage $/h, hours a day
# active, days a month.
COMPARISON_GPU_DPH = 0.30
COMPARISON_SPOT_DPH = 0.10
COMPARISON_STORAGE_DPH = 0.005
COMPARISON_HOURS_PER_DAY = 4
COMPARISON_DAYS = 30


def overrides(state: AppState, now: float) -> dict[int, float]:
    """Offer id -> the spot price the test hook set for it (still in force at `now`)."""
    rows = state.store.query(
        "SELECT offer_id, price FROM market_price_overrides "
        "WHERE expires_at IS NULL OR expires_at > ?",
        (now,),
    )
    return {int(r["offer_id"]): float(r["price"]) for r in rows}


def spot_price(machine: Machine, now: float, forced: dict[int, float]) -> float:
    return forced.get(machine.offer_id, machine.min_bid(now))


def outbid(bid: float, price: float) -> bool:
    """Whether a spot instance bidding `bid` loses its machine at spot price `price`."""
    return price > bid * (1 + OUTBID_MARGIN)


def set_override(
    state: AppState, offer_id: int, price: float | None, seconds: float | None
) -> None:
    now = time.time()
    with state.store.tx() as conn:
        conn.execute("DELETE FROM market_price_overrides WHERE offer_id = ?", (offer_id,))
        if price is not None:
            conn.execute(
                "INSERT INTO market_price_overrides (offer_id, price, set_at, expires_at) "
                "VALUES (?, ?, ?, ?)",
                (offer_id, price, now, None if seconds is None else now + seconds),
            )


@dataclass(frozen=True)
class SpotChoice:
    machine: Machine
    bid: float


def choose_offer(
    state: AppState,
    user_id: int,
    *,
    region: str,
    gpu: str | None,
    max_price: float,
    exclude_machines: Iterable[str] = (),
    now: float | None = None,
) -> SpotChoice | None:
    """The cheapest spot offer a deploy or a failover may rent (see the module doc)."""
    at = time.time() if now is None else now
    forced = overrides(state, at)
    rented = rented_offer_ids(state)
    banned = {
        machine_id
        for machine_id, note in history.offer_annotations(
            history.store_query(state.store), user_id
        ).items()
        if note.is_blacklisted
    } | set(exclude_machines)
    patterns = expand_region(region)
    wanted = gpu.lower() if gpu else None
    best: SpotChoice | None = None
    for m in market_of(state).machines:
        if m.offer_id in rented or m.machine_id in banned or m.num_gpus != 1:
            continue
        if wanted is not None and m.gpu_name.lower() != wanted:
            continue
        if m.reliability < STABLE_RELIABILITY or not region_matches(patterns, m.geolocation):
            continue
        price = spot_price(m, at, forced)
        if price > max_price:
            continue
        if best is None or (price, m.offer_id) < (best.bid, best.machine.offer_id):
            best = SpotChoice(m, price)
    return best


def pricing(
    state: AppState, region: str, gpu_name: str | None, include_all: bool
) -> dict[str, Any]:
    """`GET /spot/pricing` (§8.4) from the live market."""
    now = time.time()
    forced = overrides(state, now)
    rented = rented_offer_ids(state)
    patterns = expand_region(region)
    wanted = gpu_name.strip().lower() if gpu_name and gpu_name.strip() else None
    found = [
        m
        for m in market_of(state).machines
        if m.offer_id not in rented
        and (wanted is None or m.gpu_name.lower() == wanted)
        and region_matches(patterns, m.geolocation)
        and spot_price(m, now, forced) <= MAX_SEARCH_PRICE
    ]
    stable = [m for m in found if m.reliability >= STABLE_RELIABILITY]
    shown = found if include_all or not stable else stable
    base: dict[str, Any] = {"region": region, "gpu_name": gpu_name, "include_all": include_all}
    if not shown:
        return {
            **base,
            "offers_count": 0,
            "total_offers": 0,
            "filtered_unstable": 0,
            "cheapest_price": 0,
            "average_price": 0,
            "estimated_ondemand": 0,
            "savings_vs_ondemand": 0,
            "top_offers": [],
            "message": "No spot offers available",
        }
    shown.sort(key=lambda m: (spot_price(m, now, forced), m.offer_id))
    spot = [spot_price(m, now, forced) for m in shown]
    ondemand = [m.dph(now) for m in shown]
    average = sum(spot) / len(spot)
    average_ondemand = sum(ondemand) / len(ondemand)
    savings = (1 - average / average_ondemand) * 100 if average_ondemand > 0 else 0.0
    return {
        **base,
        "offers_count": len(shown),
        "total_offers": len(found),
        "filtered_unstable": len(found) - len(shown),
        "cheapest_price": round(spot[0], 4),
        "average_price": round(average, 4),
        "estimated_ondemand": round(average_ondemand, 4),
        "savings_vs_ondemand": round(savings, 1),
        "top_offers": [
            {
                "gpu_name": m.gpu_name,
                "min_bid": round(price, 4),
                "region": m.region,
                "inet_down": m.inet_down,
                "machine_id": m.machine_id,
                "offer_id": m.offer_id,
                "geolocation": m.geolocation,
                "num_gpus": m.num_gpus,
                "dph_total": m.dph(now),
                "reliability": m.reliability,
            }
            for m, price in zip(shown[:TOP_OFFERS], spot, strict=False)
        ],
        "note": "Prices are minimum bids in $/h; estimated_ondemand is the average on-demand "
        "price of the same machines.",
    }


def comparison() -> dict[str, Any]:
    """`GET /spot/comparison` (§8.4): the contract's static monthly comparison."""
    hours = COMPARISON_HOURS_PER_DAY * COMPARISON_DAYS
    storage = COMPARISON_STORAGE_DPH * (24 - COMPARISON_HOURS_PER_DAY) * COMPARISON_DAYS
    on_demand = COMPARISON_GPU_DPH * 24 * COMPARISON_DAYS
    economic = COMPARISON_GPU_DPH * hours + storage
    spot = COMPARISON_SPOT_DPH * hours + storage

    def saving(cost: float) -> dict[str, float]:
        return {
            "cost_usd": round(cost, 2),
            "savings_usd": round(on_demand - cost, 2),
            "savings_percent": round((1 - cost / on_demand) * 100, 1),
        }

    return {
        "assumptions": {
            "gpu_dph": COMPARISON_GPU_DPH,
            "spot_dph": COMPARISON_SPOT_DPH,
            "storage_dph": COMPARISON_STORAGE_DPH,
            "active_hours_per_day": COMPARISON_HOURS_PER_DAY,
            "days": COMPARISON_DAYS,
        },
        "monthly_costs": {
            "on_demand": {"cost_usd": round(on_demand, 2), "description": "GPU on 24/7"},
            "economic": {**saving(economic), "description": "GPU paused when idle"},
            "spot": {
                **saving(spot),
                "description": "Spot GPU, failover from a synced workspace snapshot",
                "risk": "interruptions: the work since the last sync is lost",
            },
        },
        "recommendation": "spot",
    }


def price_history(
    state: AppState, gpus: list[str], hours: float, points: int, now: float | None = None
) -> dict[str, list[dict[str, float]]]:
    """GPU -> `points` samples over the last `hours`: the cheapest and the average spot price
    and the average on-demand price of its one-GPU machines. The market's prices are a
    function of time, so its history is exact; an override in force now shows at the end."""
    at = time.time() if now is None else now
    forced = overrides(state, at)
    machines = [m for m in market_of(state).machines if m.num_gpus == 1]
    step = hours * 3600 / max(1, points - 1)
    series: dict[str, list[dict[str, float]]] = {}
    for gpu in gpus:
        mine = [m for m in machines if m.gpu_name == gpu]
        if not mine:
            continue
        samples = []
        for index in range(points):
            t = at - (points - 1 - index) * step
            last = index == points - 1
            spot = [spot_price(m, t, forced) if last else m.min_bid(t) for m in mine]
            dph = [m.dph(t) for m in mine]
            samples.append(
                {
                    "t": round(t, 3),
                    "cheapest_spot": round(min(spot), 4),
                    "average_spot": round(sum(spot) / len(spot), 4),
                    "average_ondemand": round(sum(dph) / len(dph), 4),
                }
            )
        series[gpu] = samples
    return series
