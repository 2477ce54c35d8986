"""The deploy wizard: a multi-start race over `/api/v1/instances`, run on the client (§4).

    result = run_race(client, WizardRequest(gpu_name="RTX 4090", speed_tier="fast"),
                      on_event=print)
    result.winner            # the running instance (API object)
    result.losers            # instance ids created for the race and deleted again

How it races (contract §4.3, with quirks 21-24 fixed):

1. One offer search with the filters (GPU, count, price cap, tier's minimum speed, region, disk),
   then the tier's maximum speed (except `ultra`) and the wizard's region table are applied here.
2. Blacklisted machines are never raced: the offers' `is_blacklisted` annotation, the active
   blacklist entries (one list call), and machines with >= 3 attempts under 30 % success.
3. Cheapest first (the server library sorted by speed, quirk 23).
4. Batches of `batch_size` offers: all creates of a batch are sent at once, then one
   `GET /instances` per poll until one is actually `running`; it wins. Every other machine of
   the race is deleted with `reason=race_loser`, which the history does not count as a failure
   (quirk 22). A machine that fails to boot is deleted and leaves the race. When nobody is ready
   within `batch_timeout` seconds (quirk 24: a real window, 60 s by default), the batch is deleted
   and the next one starts.
5. Nothing leaks: on any exception or KeyboardInterrupt every machine the race created is deleted
   before the exception goes on (creates still in flight are waited for first). A create that
   got no definite answer (a 5xx, a broken connection: the machine may exist) is looked for
   once the race is over, by the race's label on that offer, and deleted when found.

No CLI code lives here: progress is reported as `RaceEvent`s through `on_event`, so the CLI and
the declarative `instances:` kind draw the same race their own way. `clock` and `sleep` are
injectable so tests never wait on wall-clock time.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal, Protocol

from dumont_plan.client.instances import actual_status, is_failed, is_running
from dumont_plan.errors import ConnectError, DumontError, NotFoundError, ServerError

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

# DELETE reasons (the server decides what the history records): a cancelled loser is not a
# failure (quirk 22); a machine still loading when its batch's window closes is a `loading` one.
LOSER_REASON = "race_loser"
TIMEOUT_REASON = "boot_timeout"
OFFER_LIMIT = 100
PROBLEMATIC_MIN_ATTEMPTS = 3
PROBLEMATIC_SUCCESS_RATE = 0.3

EventKind = Literal[
    "search",  # offers query sent (message: the filters)
    "offers",  # usable offers found (message: how many, how many skipped)
    "batch",  # a batch starts (batch, message: its offer ids)
    "create",  # POST /instances for an offer
    "created",  # the offer's instance exists (instance_id, status)
    "create_failed",  # the create was refused (message: the API's error)
    "status",  # a raced instance changed status (instance_id, status)
    "boot_failed",  # it reached a state it never boots from; deleted
    "winner",  # the first running instance (instance_id)
    "cancelled",  # a loser deleted (instance_id, message: the reason)
    "batch_timeout",  # nobody ready in the window; the batch is deleted
    "cleanup",  # an error or Ctrl-C: deleting everything created (message: the error)
    "cleanup_failed",  # an instance could not be deleted (instance_id, message)
    "done",  # the race is over (instance_id of the winner)
]


@dataclass(frozen=True)
class RaceEvent:
    """One step of the race, for progress displays and apply events."""

    kind: EventKind
    elapsed: float
    batch: int = 0
    offer: dict[str, Any] | None = None
    instance_id: int | None = None
    status: str | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "elapsed": round(self.elapsed, 3)}
        if self.batch:
            out["batch"] = self.batch
        if self.offer is not None:
            out["offer_id"] = self.offer.get("id")
            out["gpu_name"] = self.offer.get("gpu_name")
            out["dph_total"] = self.offer.get("dph_total")
        for key in ("instance_id", "status"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.message:
            out["message"] = self.message
        return out


EventSink = Callable[[RaceEvent], None]


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


class InstancesLike(Protocol):
    def offers(self, **filters: Any) -> list[dict[str, Any]]: ...

    def create(self, offer_id: int, **fields: Any) -> dict[str, Any]: ...

    def list(self, status: str | None = None) -> list[dict[str, Any]]: ...

    def delete(
        self, instance_id: int | str, reason: str | None = None, *, missing_ok: bool = False
    ) -> dict[str, Any] | None: ...


class BlacklistLike(Protocol):
    def list(
        self,
        provider: str | None = None,
        blacklist_type: str | None = None,
        include_expired: bool | None = None,
    ) -> list[dict[str, Any]]: ...


class RaceAPI(Protocol):
    """What the race needs of the API: `DumontClient` is one."""

    @property
    def instances(self) -> InstancesLike: ...

    @property
    def blacklist(self) -> BlacklistLike: ...


CandidateState = Literal[
    "creating", "create_failed", "loading", "running", "failed", "gone", "cancelled", "winner"
]


@dataclass
class Candidate:
    """One offer raced: its instance (once created) and where it got to."""

    offer: dict[str, Any]
    batch: int
    state: CandidateState = "creating"
    instance_id: int | None = None
    status: str | None = None
    error: str | None = None
    created_at: float | None = None
    ready_at: float | None = None
    deleted: bool = False
    unknown: bool = False  # the create had no definite answer: its machine may exist

    def made(self, row: dict[str, Any]) -> bool:
        """Whether the listed instance `row` was rented from this candidate's offer."""
        if row.get("offer_id") is not None:
            return str(row["offer_id"]) == str(self.offer_id)
        machine = self.offer.get("machine_id")
        return machine is not None and str(row.get("machine_id")) == str(machine)

    @property
    def offer_id(self) -> int:
        return int(self.offer["id"])


@dataclass(frozen=True)
class RaceResult:
    """The race's outcome: the winner, what was tried and deleted, and how long it took."""

    winner: dict[str, Any]
    offer: dict[str, Any]
    batch: int
    candidates: list[Candidate]
    losers: list[int]  # instances created by the race and deleted because another won
    failed: list[int]  # instances that failed to boot (deleted)
    undeleted: list[int] = field(default_factory=list)  # deletes that failed: delete by hand!
    timings: dict[str, float] = field(default_factory=dict)  # search, ready, total (seconds)

    @property
    def instance_id(self) -> int:
        return int(self.winner["id"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "winner": self.winner,
            "offer": self.offer,
            "batch": self.batch,
            "losers": self.losers,
            "failed": self.failed,
            "undeleted": self.undeleted,
            "create_errors": [
                {"offer_id": c.offer_id, "error": c.error}
                for c in self.candidates
                if c.state == "create_failed"
            ],
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


def country_of(offer: dict[str, Any]) -> str:
    """The country code at the end of an offer's geolocation (`Germany, DE` -> `DE`)."""
    geo = str(offer.get("geolocation") or "").strip()
    return geo.rsplit(",", 1)[-1].strip().upper()


def is_problematic(offer: dict[str, Any]) -> bool:
    """Enough attempts and too few successes to be worth racing (§4.3 step 3)."""
    attempts = offer.get("total_attempts") or 0
    rate = offer.get("success_rate")
    return (
        isinstance(attempts, int | float)
        and attempts >= PROBLEMATIC_MIN_ATTEMPTS
        and isinstance(rate, int | float)
        and rate < PROBLEMATIC_SUCCESS_RATE
    )


@dataclass
class Selection:
    """The offers to race, cheapest first, and what was left out and why."""

    offers: list[dict[str, Any]]
    found: int = 0
    blacklisted: int = 0
    problematic: int = 0
    out_of_band: int = 0


def select_offers(
    offers: Sequence[dict[str, Any]], request: WizardRequest, blacklisted: set[str]
) -> Selection:
    """Apply the tier band, region table, blacklist and price cap; order cheapest first."""
    low, high = SPEED_TIERS[request.speed_tier]
    countries = REGION_COUNTRIES.get(request.region)
    selection = Selection(offers=[], found=len(offers))
    seen: set[int] = set()
    for offer in offers:
        if "id" not in offer or int(offer["id"]) in seen:
            continue
        seen.add(int(offer["id"]))
        speed = float(offer.get("inet_down") or 0)
        price = float(offer.get("dph_total") or 0)
        in_band = low <= speed and (high is None or speed < high) and price <= request.max_price
        if not in_band or (countries is not None and country_of(offer) not in countries):
            selection.out_of_band += 1
        elif offer.get("is_blacklisted") or str(offer.get("machine_id")) in blacklisted:
            selection.blacklisted += 1
        elif is_problematic(offer):
            selection.problematic += 1
        else:
            selection.offers.append(offer)
    selection.offers.sort(
        key=lambda o: (
            float(o.get("dph_total") or 0),
            -float(o.get("reliability") or 0),
            int(o["id"]),
        )
    )
    return selection


def epoch_of(value: Any) -> float | None:
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


def active_blacklist(entries: Sequence[dict[str, Any]], now: float) -> set[str]:
    """Machine ids of the active entries (not expired, not marked inactive)."""
    ids: set[str] = set()
    for entry in entries:
        if entry.get("is_active") is False:
            continue
        expires = epoch_of(entry.get("expires_at"))
        if expires is not None and expires < now:
            continue
        ids.add(str(entry.get("machine_id")))
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


class _Race:
    """One race's mutable state; `run_race` is the public entry point."""

    def __init__(
        self,
        api: RaceAPI,
        request: WizardRequest,
        on_event: EventSink | None,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        wall_clock: Callable[[], float],
    ) -> None:
        self.api = api
        self.request = request
        self.on_event = on_event
        self.clock = clock
        self.sleep = sleep
        self.wall_clock = wall_clock
        self.start = clock()
        self.candidates: list[Candidate] = []
        self.lock = threading.Lock()
        self.prefix = request.idempotency_prefix or f"wizard-{uuid.uuid4().hex}"
        self.undeleted: list[int] = []
        self.winner_row: dict[str, Any] = {}
        self._emit_lock = threading.Lock()

    def emit(self, kind: EventKind, **fields: Any) -> None:
        """Report one event (serialised: creates report from worker threads)."""
        if self.on_event is not None:
            with self._emit_lock:
                self.on_event(RaceEvent(kind, self.clock() - self.start, **fields))

    # --- offers ---------------------------------------------------------------------------

    def search(self) -> list[dict[str, Any]]:
        request = self.request
        self.emit("search", message=request.describe())
        offers = self.api.instances.offers(**request.offer_filters())
        try:
            entries = self.api.blacklist.list()
        except NotFoundError:  # a server without the history database
            entries = []
        selection = select_offers(offers, request, active_blacklist(entries, self.wall_clock()))
        skipped = selection.blacklisted + selection.problematic
        self.emit(
            "offers",
            message=f"{len(selection.offers)} offers to race"
            + (f" ({skipped} blacklisted or unreliable machines skipped)" if skipped else ""),
        )
        if not selection.offers:
            raise no_offers_error(request, selection)
        return selection.offers

    # --- one batch ------------------------------------------------------------------------

    def create(self, candidate: Candidate) -> None:
        """Runs in a worker thread: rent the offer's machine and record its id."""
        request = self.request
        try:
            instance = self.api.instances.create(
                candidate.offer_id,
                image=request.image,
                disk_size=request.disk_space,
                label=request.label,
                idempotency_key=f"{self.prefix}:{candidate.offer_id}",
                **({"use_spot": True} if request.use_spot else {}),
            )
        except DumontError as exc:
            with self.lock:
                candidate.state = "create_failed"
                candidate.error = exc.message
                candidate.unknown = isinstance(exc, ServerError | ConnectError)
            self.emit(
                "create_failed", batch=candidate.batch, offer=candidate.offer, message=exc.message
            )
            return
        with self.lock:
            candidate.instance_id = int(instance["id"])
            candidate.created_at = self.clock()
            candidate.state = "loading"
            candidate.status = actual_status(instance)
        self.emit(
            "created",
            batch=candidate.batch,
            offer=candidate.offer,
            instance_id=candidate.instance_id,
            status=candidate.status,
        )

    def create_batch(self, batch: list[Candidate], pool: ThreadPoolExecutor) -> None:
        futures: list[Future[None]] = []
        for candidate in batch:
            self.emit("create", batch=candidate.batch, offer=candidate.offer)
            futures.append(pool.submit(self.create, candidate))
        wait_futures(futures)
        for future in futures:
            future.result()  # a bug (not an API refusal) in a create ends the race: cleanup

    def delete(self, candidate: Candidate, reason: str | None) -> bool:
        """Delete a raced instance once; False (and recorded) when the API refused."""
        if candidate.instance_id is None or candidate.deleted:
            return True
        try:
            self.api.instances.delete(candidate.instance_id, reason, missing_ok=True)
        except DumontError as exc:
            self.undeleted.append(candidate.instance_id)
            self.emit(
                "cleanup_failed",
                batch=candidate.batch,
                instance_id=candidate.instance_id,
                message=f"could not delete instance {candidate.instance_id}: {exc.message}",
            )
            return False
        candidate.deleted = True
        return True

    def cancel(self, candidate: Candidate, why: str, reason: str = LOSER_REASON) -> None:
        if self.delete(candidate, reason):
            candidate.state = "cancelled"
            self.emit(
                "cancelled",
                batch=candidate.batch,
                offer=candidate.offer,
                instance_id=candidate.instance_id,
                message=why,
            )

    def poll_batch(self, batch: list[Candidate]) -> Candidate | None:
        """Poll until one of `batch` runs (the winner), all fail, or the window closes."""
        deadline = self.clock() + self.request.batch_timeout
        while True:
            racing = [c for c in batch if c.state == "loading"]
            if not racing:
                return None
            rows = {int(i["id"]): i for i in self.api.instances.list() if "id" in i}
            for candidate in racing:  # cheapest first: it wins a tie
                row = rows.get(int(candidate.instance_id or 0))
                if row is None:
                    candidate.state = "gone"
                    candidate.deleted = True
                    self.emit(
                        "boot_failed",
                        batch=candidate.batch,
                        offer=candidate.offer,
                        instance_id=candidate.instance_id,
                        message="the instance disappeared",
                    )
                    continue
                status = actual_status(row)
                if status != candidate.status:
                    candidate.status = status
                    self.emit(
                        "status",
                        batch=candidate.batch,
                        offer=candidate.offer,
                        instance_id=candidate.instance_id,
                        status=status,
                    )
                if is_running(row):
                    candidate.state = "winner"
                    candidate.ready_at = self.clock()
                    self.winner_row = row
                    return candidate
                if is_failed(row):
                    candidate.state = "failed"
                    self.delete(candidate, None)
                    self.emit(
                        "boot_failed",
                        batch=candidate.batch,
                        offer=candidate.offer,
                        instance_id=candidate.instance_id,
                        status=status,
                        message=f"boot failed ({status})",
                    )
            if self.clock() >= deadline:
                return None
            self.sleep(min(self.request.poll_interval, max(deadline - self.clock(), 0.0)))

    # --- the race -------------------------------------------------------------------------

    def run(self) -> RaceResult:
        request = self.request
        offers = self.search()
        search_done = self.clock()
        size = request.batch_size
        batches = [offers[i : i + size] for i in range(0, len(offers), size)]
        winner: Candidate | None = None
        pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="dumont-race")
        try:
            for number, chunk in enumerate(batches[: request.max_batches], start=1):
                batch = [Candidate(offer, number) for offer in chunk]
                self.candidates.extend(batch)
                self.emit(
                    "batch",
                    batch=number,
                    message=", ".join(str(c.offer_id) for c in batch),
                )
                self.create_batch(batch, pool)
                winner = self.poll_batch(batch)
                if winner is not None:
                    break
                if any(c.state == "loading" for c in batch):
                    self.emit(
                        "batch_timeout",
                        batch=number,
                        message=f"no machine ready within {request.batch_timeout:g} s",
                    )
                for candidate in batch:
                    if candidate.state == "loading":
                        self.cancel(candidate, "not ready in time", TIMEOUT_REASON)
            if winner is None:
                raise self.nobody_ready()
            self.emit(
                "winner",
                batch=winner.batch,
                offer=winner.offer,
                instance_id=winner.instance_id,
                status="running",
            )
            for candidate in self.candidates:
                if (
                    candidate is not winner
                    and candidate.instance_id is not None
                    and not candidate.deleted
                ):
                    self.cancel(candidate, f"instance {winner.instance_id} won")
            self.sweep_unknown()
        except BaseException as exc:
            self.abort(pool, exc)
            raise
        pool.shutdown(wait=True)
        end = self.clock()
        self.emit("done", batch=winner.batch, instance_id=winner.instance_id)
        return RaceResult(
            winner=self.winner_row,
            offer=winner.offer,
            batch=winner.batch,
            candidates=self.candidates,
            losers=self.ids_in("cancelled"),
            failed=self.ids_in("failed", "gone"),
            undeleted=list(self.undeleted),
            timings={
                "search": search_done - self.start,
                "ready": (winner.ready_at or end) - (winner.created_at or search_done),
                "total": end - self.start,
            },
        )

    def ids_in(self, *states: str) -> list[int]:
        return [
            c.instance_id
            for c in self.candidates
            if c.state in states and c.instance_id is not None
        ]

    def nobody_ready(self) -> DumontError:
        tried = self.candidates
        refused = sum(1 for c in tried if c.state == "create_failed")
        failed = sum(1 for c in tried if c.state in ("failed", "gone"))
        slow = sum(1 for c in tried if c.state == "cancelled")
        return DumontError(
            f"no machine became ready: {len(tried)} offers raced in "
            f"{max((c.batch for c in tried), default=0)} batches ({refused} refused, "
            f"{failed} failed to boot, {slow} not ready within "
            f"{self.request.batch_timeout:g} s); everything created was deleted",
            "retry, raise the price cap or widen the region/speed tier; "
            "`dumont history list` shows the attempts",
        )

    def abort(self, pool: ThreadPoolExecutor, exc: BaseException) -> None:
        """Delete every machine the race created, the winner too (the caller never got it),
        after waiting for the creates in flight. A Ctrl-C during the cleanup does not stop it."""
        self.emit("cleanup", message=f"{type(exc).__name__}: {exc}".rstrip(": "))
        _shielded(lambda: pool.shutdown(wait=True))
        for candidate in self.candidates:
            if candidate.instance_id is not None and not candidate.deleted:
                _shielded(partial(self.cancel, candidate, "race aborted"))
        with contextlib.suppress(Exception):
            _shielded(self.sweep_unknown)

    def sweep_unknown(self) -> None:
        """Delete the machines of creates whose answer was lost (see the module doc, 5)."""
        unknown = [c for c in self.candidates if c.unknown and c.instance_id is None]
        if not unknown or not self.request.label:
            return
        known = {c.instance_id for c in self.candidates if c.instance_id is not None}
        try:
            rows = self.api.instances.list()
        except DumontError as exc:
            for candidate in unknown:
                self.emit(
                    "cleanup_failed",
                    batch=candidate.batch,
                    offer=candidate.offer,
                    message=(
                        f"could not look for the machine of offer {candidate.offer_id} (its "
                        f"create's answer was lost): {exc.message}; `dumont instance list` "
                        f"shows it if it exists"
                    ),
                )
            return
        for row in rows:
            if row.get("label") != self.request.label or row.get("id") in known:
                continue
            owner = next((c for c in unknown if c.made(row)), None)
            if owner is not None and owner.instance_id is None:
                owner.instance_id = int(row["id"])
                self.cancel(owner, "its create's answer was lost")


def _shielded(action: Callable[[], object], attempts: int = 3) -> None:
    """Run `action`, running it again when a KeyboardInterrupt lands in the middle."""
    for attempt in range(attempts):
        try:
            action()
            return
        except KeyboardInterrupt:
            if attempt + 1 == attempts:
                raise


def run_race(
    api: RaceAPI,
    request: WizardRequest,
    *,
    on_event: EventSink | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    wall_clock: Callable[[], float] = time.time,
) -> RaceResult:
    """Race offers matching `request` and return the first instance that runs.

    Raises DumontError before any request for bad input, when no offer matches (naming the
    filters and the fix) and when no machine became ready in `max_batches` batches. Whatever
    happens, no machine created by the race is left behind except the winner.
    """
    return _Race(api, request.validated(), on_event, clock, sleep, wall_clock).run()
