"""What the wizard races for: the request, the offer filters and tables, the selection.

`WizardRequest.validated()` checks the user's input; `select_offers` applies the speed tier's
band, the wizard's region table, the blacklist and the price cap and orders what is left
cheapest first; `no_offers_error` says which filter to loosen. `MarketNames` matches the GPU
and region names people type (`RTX4090`) to the market's (`RTX 4090`), with did-you-mean.

Pure (errors and the wire models only): the planner prices an instance with the same
selection the race makes (`kinds.instance`), without loading the client or the race.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from difflib import get_close_matches
from typing import Any

from dumont_plan.errors import DumontError
from dumont_plan.wire_models import BlacklistEntry, Offer

# Contract §4.2: Mbps bands per tier; `ultra` has no upper bound.
SPEED_TIERS: dict[str, tuple[float, float | None]] = {
    "slow": (100.0, 500.0),
    "medium": (500.0, 2000.0),
    "fast": (2000.0, 4000.0),
    "ultra": (4000.0, None),
}
REGIONS = ("global", "US", "EU", "ASIA")
# The wizard's own region table (§4.2: US includes Canada), as geolocation country codes.
_EU = "AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE"
_EUROPE = "GB UK CH NO IS UA RS"
_ASIA = "JP SG KR IN CN HK TW TH VN MY ID PH IL AE SA QA TR KZ PK BD LK MN"
REGION_COUNTRIES: dict[str, frozenset[str]] = {
    "US": frozenset({"US", "CA"}),
    "EU": frozenset(_EU.split() + _EUROPE.split()),
    "ASIA": frozenset(_ASIA.split()),
}
# The offers search's region vocabulary (§3.5): continent codes; the table above is re-applied.
REGION_QUERY: dict[str, str | None] = {"global": None, "US": "NA", "EU": "EU", "ASIA": "AS"}
OFFER_LIMIT = 100
PROBLEMATIC_MIN_ATTEMPTS = 3
PROBLEMATIC_SUCCESS_RATE = 0.3


@dataclass(frozen=True)
class WizardRequest:
    """What to race for. `validated()` checks it and returns the canonical form."""

    gpu_name: str | None = None
    speed_tier: str = "fast"
    max_price: float = 2.0
    region: str = "global"
    disk_space: float = 50.0
    num_gpus: int = 1
    image: str | None = None
    label: str | None = "dumont:wizard"
    use_spot: bool = False
    batch_size: int = 5
    max_batches: int = 3
    batch_timeout: float = 60.0
    poll_interval: float = 1.0
    idempotency_prefix: str | None = None  # Idempotency-Key = f"{prefix}:{offer_id}"

    def validated(self) -> WizardRequest:
        """The request with canonical tier/region names; DumontError for bad input."""
        tier = str(self.speed_tier).strip().lower()
        if tier not in SPEED_TIERS:
            raise DumontError(
                f"speed tier {self.speed_tier!r} is unknown",
                f"use one of: {', '.join(SPEED_TIERS)}",
            )
        region = next((r for r in REGIONS if r.lower() == str(self.region).strip().lower()), None)
        if region is None:
            raise DumontError(
                f"region {self.region!r} is unknown", f"use one of: {', '.join(REGIONS)}"
            )
        checks: list[tuple[bool, str, str]] = [
            (
                self.max_price > 0,
                f"price {self.max_price:g} must be above 0 ($/h)",
                "give the highest $/h you accept, e.g. 2.0",
            ),
            (
                1 <= self.num_gpus <= 8,
                f"num_gpus {self.num_gpus} is out of range",
                "use 1-8",
            ),
            (
                self.disk_space >= 10,
                f"disk space {self.disk_space:g} GB is too small",
                "use at least 10 GB",
            ),
            (self.batch_size >= 1, "batch size must be at least 1", "use e.g. 5"),
            (self.max_batches >= 1, "max batches must be at least 1", "use e.g. 3"),
            (
                self.batch_timeout > 0,
                "the readiness window must be above 0 seconds",
                "use e.g. 60",
            ),
            (self.poll_interval > 0, "the poll interval must be above 0 seconds", "use e.g. 1"),
        ]
        for ok, message, hint in checks:
            if not ok:
                raise DumontError(message, hint)
        gpu = self.gpu_name.strip() if self.gpu_name else None
        return replace(self, speed_tier=tier, region=region, gpu_name=gpu or None)

    def describe(self) -> str:
        """The filters in words, for messages: `gpu=RTX 4090, speed=fast (2000-4000 Mbps), …`."""
        low, high = SPEED_TIERS.get(self.speed_tier, (0.0, None))
        band = f"{low:g}-{high:g} Mbps" if high else f">= {low:g} Mbps"
        parts = [
            f"gpu={self.gpu_name or 'any'}",
            f"speed={self.speed_tier} ({band})",
            f"price <= ${self.max_price:g}/h",
            f"region={self.region}",
        ]
        if self.num_gpus != 1:
            parts.append(f"num_gpus={self.num_gpus}")
        parts.append(f"disk >= {self.disk_space:g} GB")
        if self.use_spot:
            parts.append("spot")
        return ", ".join(parts)

    def offer_filters(self) -> dict[str, Any]:
        """The `GET /instances/offers` query for this request."""
        return {
            "gpu_name": self.gpu_name,
            "num_gpus": self.num_gpus,
            "max_price": self.max_price,
            "min_inet_down": SPEED_TIERS[self.speed_tier][0],
            "min_disk": self.disk_space,
            "region": REGION_QUERY[self.region],
            "machine_type": "interruptible" if self.use_spot else None,
            "order_by": "dph_total",
            "limit": OFFER_LIMIT,
        }


def country_of(offer: Offer) -> str:
    """The country code at the end of an offer's geolocation (`Germany, DE` -> `DE`)."""
    geo = (offer.geolocation or "").strip()
    return geo.rsplit(",", 1)[-1].strip().upper()


def is_problematic(offer: Offer) -> bool:
    """Enough attempts and too few successes to be worth racing (§4.3 step 3)."""
    attempts = offer.total_attempts or 0
    rate = offer.success_rate
    return (
        attempts >= PROBLEMATIC_MIN_ATTEMPTS
        and rate is not None
        and rate < PROBLEMATIC_SUCCESS_RATE
    )


@dataclass
class Selection:
    """The offers to race, cheapest first, and what was left out and why."""

    offers: list[Offer]
    found: int = 0
    blacklisted: int = 0
    problematic: int = 0
    out_of_band: int = 0


def select_offers(
    offers: Sequence[Offer], request: WizardRequest, blacklisted: set[str]
) -> Selection:
    """Apply the tier band, region table, blacklist and price cap; order cheapest first."""
    low, high = SPEED_TIERS[request.speed_tier]
    countries = REGION_COUNTRIES.get(request.region)
    selection = Selection(offers=[], found=len(offers))
    seen: set[int] = set()
    for offer in offers:
        if offer.id in seen:
            continue
        seen.add(offer.id)
        speed = offer.inet_down or 0.0
        price = offer.dph_total or 0.0
        in_band = low <= speed and (high is None or speed < high) and price <= request.max_price
        if not in_band or (countries is not None and country_of(offer) not in countries):
            selection.out_of_band += 1
        elif offer.is_blacklisted or str(offer.machine_id) in blacklisted:
            selection.blacklisted += 1
        elif is_problematic(offer):
            selection.problematic += 1
        else:
            selection.offers.append(offer)
    selection.offers.sort(key=lambda o: (o.dph_total or 0.0, -(o.reliability or 0.0), o.id))
    return selection


def epoch_of(value: object) -> float | None:
    """Seconds since the epoch of a number or an ISO timestamp (naive means UTC)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value.strip():
        try:
            when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    return None


def active_blacklist(entries: Sequence[BlacklistEntry], now: float) -> set[str]:
    """Machine ids of the active entries (not expired, not marked inactive)."""
    ids: set[str] = set()
    for entry in entries:
        if entry.is_active is False:
            continue
        expires = epoch_of(entry.expires_at)
        if expires is not None and expires < now:
            continue
        ids.add(entry.machine_id)
    return ids


def no_offers_error(request: WizardRequest, selection: Selection) -> DumontError:
    """A clear error naming the filters and the fixes that apply to them."""
    fixes = [f"raise the price cap (now ${request.max_price:g}/h)"]
    if request.speed_tier != "slow":
        fixes.append("pick another speed tier")
    if request.region != "global":
        fixes.append("widen the region to global")
    if request.gpu_name:
        fixes.append("choose another GPU or any GPU")
    message = f"no GPU offers match {request.describe()}"
    skipped = selection.blacklisted + selection.problematic
    if skipped:
        message += (
            f" ({selection.blacklisted} blacklisted and {selection.problematic} unreliable "
            "machines were left out; see `dumont blacklist list`)"
        )
    hint = "; ".join(fixes[:-1]) + f" or {fixes[-1]}" if len(fixes) > 1 else fixes[0]
    return DumontError(message, hint + "; `dumont instance offers` lists what the market has")


# -- names the market knows (spot commands and kinds) --------------------------------------

# The region words of the offer search (contract §3.5) that hold whatever the market has.
ANY_REGION = ("global", "any", "all")
CONTINENTS = {
    "EU": "europe",
    "NA": "north america",
    "SA": "south america",
    "AS": "asia",
    "OC": "oceania",
    "AF": "africa",
}
# Offer searches that see every 1-GPU machine (twice: cheapest and dearest first).
MARKET_FILTERS: dict[str, Any] = {
    "num_gpus": 1,
    "max_price": 1000,
    "min_disk": 0,
    "min_inet_down": 0,
    "min_inet_up": 0,
    "include_blacklisted": True,
    "limit": 100,
}


def compact(name: str) -> str:
    """`RTX4090`, `rtx 4090` and `RTX-4090` all read `rtx4090`."""
    return re.sub(r"[^0-9a-z]", "", name.casefold())


@dataclass
class MarketNames:
    """The GPU models and the places the offers name (the spot commands' did-you-mean)."""

    gpus: list[str] = field(default_factory=list)
    geolocations: list[str] = field(default_factory=list)
    regions: list[str] = field(default_factory=list)  # the offers' `region` words (US, EU, ...)

    @classmethod
    def of(cls, offers: Sequence[Offer]) -> MarketNames:
        gpus = sorted({o.gpu_name for o in offers if o.gpu_name})
        places = sorted({o.geolocation for o in offers if o.geolocation})
        regions = {str(o.raw.get("region")) for o in offers if o.raw.get("region")}
        return cls(gpus, places, sorted(regions))

    @property
    def empty(self) -> bool:
        return not self.gpus

    def region_words(self) -> list[str]:
        """Every region word that selects offers of this market, as people write them."""
        codes = {place.rpartition(",")[2].strip() for place in self.geolocations}
        words = {*ANY_REGION, *self.regions, *(c for c in codes if c)}
        words.update(code for code in CONTINENTS)
        first = {word: at for at, word in enumerate(ANY_REGION)}
        return sorted(words, key=lambda w: (first.get(w, len(first)), w.casefold()))

    def gpu(self, typed: str, where: str) -> str:
        """The market's spelling of `typed`; a DumontError with the closest name if none."""
        text = typed.strip()
        if not text:
            raise DumontError(f"{where}: the GPU name is empty", 'e.g. --gpu="RTX 4090"')
        if self.empty:
            return text
        by_key = {compact(name): name for name in self.gpus}
        found = by_key.get(compact(text))
        if found is not None:
            return found
        close = get_close_matches(compact(text), list(by_key), n=1, cutoff=0.6)
        hint = (
            f"did you mean {by_key[close[0]]!r}?"
            if close
            else f"use one of: {', '.join(self.gpus)}"
        )
        raise DumontError(f"{where}: GPU {text!r} is not on the spot market", hint)

    def region(self, typed: str, where: str) -> str:
        """`typed` when some offer is in that region (a word of the search's vocabulary or a
        part of a place's name); else a DumontError with the closest region word."""
        text = typed.strip()
        if not text:
            raise DumontError(f"{where}: the region is empty", "e.g. --region=US, EU or global")
        if self.empty:
            return text
        words = self.region_words()
        folded = text.casefold()
        if folded in {w.casefold() for w in words} or folded in CONTINENTS.values():
            return text
        if any(folded in place.casefold() for place in self.geolocations):
            return text
        by_key = {w.casefold(): w for w in words}
        close = get_close_matches(folded, list(by_key), n=1, cutoff=0.5)
        hint = f"did you mean {by_key[close[0]]!r}?" if close else f"use one of: {', '.join(words)}"
        raise DumontError(f"{where}: no offer of the market is in region {text!r}", hint)
