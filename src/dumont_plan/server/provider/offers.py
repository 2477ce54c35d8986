"""Offer search over the simulated market (contract §3.1), with every filter honoured.

The real server ignores `order_by`, `min_inet_up` and `cuda_version`, drops the disk, CPU,
network and static-IP filters when `machine_type` is set, and filters the region after the
limit (quirk 14). Here every filter applies in every mode, the region before the limit, and
`order_by` sorts (a leading `-` means descending; ties by offer id).

`machine_type`: `on-demand` (or unset, or `all`) prices offers at the on-demand rate;
`interruptible` and `bid` price them at the spot minimum bid. Every offer also carries the
additive `min_bid` and `region` (the wizard region: US, EU, ASIA, SA, OC).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dumont_plan.errors import OfferQueryError
from dumont_plan.server.provider.history import NEUTRAL, Annotation
from dumont_plan.server.provider.market import Machine, Market, canonical_gpu
from dumont_plan.server.provider.regions import expand_region, region_matches

MACHINE_TYPES = ("on-demand", "interruptible", "bid", "all")
SPOT_TYPES = frozenset({"interruptible", "bid"})
ORDER_FIELDS = (
    "dph_total",
    "min_bid",
    "inet_down",
    "inet_up",
    "reliability",
    "gpu_ram",
    "num_gpus",
    "cpu_cores",
    "cpu_ram",
    "disk_space",
    "cuda_version",
    "id",
)


@dataclass(frozen=True)
class OfferQuery:
    gpu_name: str | None = None
    num_gpus: int = 1
    min_gpu_ram: float = 0
    min_cpu_cores: int = 1
    min_cpu_ram: float = 1
    min_disk: float = 50
    min_inet_down: float = 100
    min_inet_up: float = 100
    max_price: float = 10.0
    min_reliability: float = 0.0
    region: str | None = None
    verified_only: bool = False
    static_ip: bool = False
    cuda_version: str | None = None
    machine_type: str | None = None
    order_by: str = "dph_total"
    limit: int = 50
    include_blacklisted: bool = False


def version_tuple(text: str, where: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.strip().split("."))
    except ValueError as exc:
        raise OfferQueryError(f"{where}: {text!r} is not a version; use numbers like 12.1") from exc


def _order_key(order_by: str) -> tuple[str, bool]:
    text = order_by.strip()
    descending = text.startswith("-")
    field = text.lstrip("-+").strip() or "dph_total"
    if field not in ORDER_FIELDS:
        raise OfferQueryError(
            f"order_by: unknown field {field!r}; use one of {', '.join(ORDER_FIELDS)} "
            "(prefix - for descending)"
        )
    return field, descending


def offer_json(
    machine: Machine, *, spot: bool, now: float, note: Annotation = NEUTRAL
) -> dict[str, Any]:
    """The contract's offer object (plus `min_bid` and `region`)."""
    return {
        "id": machine.offer_id,
        "gpu_name": machine.gpu_name,
        "num_gpus": machine.num_gpus,
        "gpu_ram": machine.gpu_ram,
        "cpu_cores": machine.cpu_cores,
        "cpu_ram": machine.cpu_ram,
        "disk_space": machine.disk_space,
        "inet_down": machine.inet_down,
        "inet_up": machine.inet_up,
        "dph_total": machine.price(spot, now),
        "geolocation": machine.geolocation,
        "reliability": machine.reliability,
        "cuda_version": machine.cuda_version or "0.0",
        "verified": machine.verified,
        "static_ip": machine.static_ip,
        "machine_id": machine.machine_id,
        **note.as_dict(),
        "min_bid": machine.min_bid(now),
        "region": machine.region,
    }


def search_offers(
    market: Market,
    query: OfferQuery,
    *,
    rented: set[int],
    notes: dict[str, Annotation],
    now: float,
) -> list[dict[str, Any]]:
    """Offers matching `query`, sorted and limited; `rented` offer ids are left out."""
    if query.machine_type is not None and query.machine_type not in MACHINE_TYPES:
        raise OfferQueryError(
            f"machine_type: unknown value {query.machine_type!r}; "
            f"use one of {', '.join(MACHINE_TYPES)}"
        )
    spot = query.machine_type in SPOT_TYPES
    field, descending = _order_key(query.order_by)
    min_cuda = version_tuple(query.cuda_version, "cuda_version") if query.cuda_version else None
    regions = expand_region(query.region)
    gpu = canonical_gpu(query.gpu_name.strip()).lower() if query.gpu_name else None
    offers = []
    for m in market.machines:
        if m.offer_id in rented:
            continue
        if gpu is not None and m.gpu_name.lower() != gpu:
            continue
        if m.num_gpus != query.num_gpus:
            continue
        if (
            m.gpu_ram < query.min_gpu_ram
            or m.cpu_cores < query.min_cpu_cores
            or m.cpu_ram < query.min_cpu_ram
            or m.disk_space < query.min_disk
            or m.inet_down < query.min_inet_down
            or m.inet_up < query.min_inet_up
            or m.reliability < query.min_reliability
        ):
            continue
        if (query.verified_only and not m.verified) or (query.static_ip and not m.static_ip):
            continue
        if min_cuda is not None and version_tuple(m.cuda_version, "cuda_version") < min_cuda:
            continue
        if not region_matches(regions, m.geolocation):
            continue
        price = m.price(spot, now)
        if price > query.max_price:
            continue
        note = notes.get(m.machine_id, NEUTRAL)
        if note.is_blacklisted and not query.include_blacklisted:
            continue
        offers.append(offer_json(m, spot=spot, now=now, note=note))

    def key(offer: dict[str, Any]) -> Any:
        value = offer[field]
        if field == "cuda_version":
            value = version_tuple(str(value), "cuda_version")
        return value

    offers.sort(key=lambda o: o["id"])
    offers.sort(key=key, reverse=descending)
    return offers[: max(0, query.limit)]
