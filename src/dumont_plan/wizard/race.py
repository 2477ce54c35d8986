"""The deploy wizard's race: a multi-start race over `/api/v1/instances`, run on the client (§4).

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
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from difflib import get_close_matches
from functools import partial
from typing import Any, Protocol

from dumont_plan.errors import ApiError, ConnectError, DumontError, NotFoundError, ServerError
from dumont_plan.offers import (
    MARKET_FILTERS,
    MarketNames,
    Selection,
    WizardRequest,
    active_blacklist,
    compact,
    no_offers_error,
    select_offers,
)
from dumont_plan.text import plural
from dumont_plan.wire_models import BlacklistEntry, Instance, Offer
from dumont_plan.wizard.model import Candidate, EventKind, EventSink, RaceEvent, RaceResult

# DELETE reasons (the server decides what the history records): a cancelled loser is not a
# failure (quirk 22); a machine still loading when its batch's window closes is a `loading` one.
LOSER_REASON = "race_loser"
TIMEOUT_REASON = "boot_timeout"


class InstancesLike(Protocol):
    def offers(self, **filters: Any) -> list[Offer]: ...

    def create(self, offer_id: int, **fields: Any) -> Instance: ...

    def list(self, status: str | None = None) -> list[Instance]: ...

    def delete(
        self, instance_id: int | str, reason: str | None = None, *, missing_ok: bool = False
    ) -> dict[str, Any] | None: ...


class BlacklistLike(Protocol):
    def list(
        self,
        provider: str | None = None,
        blacklist_type: str | None = None,
        include_expired: bool | None = None,
    ) -> list[BlacklistEntry]: ...


class RaceAPI(Protocol):
    """What the race needs of the API: `DumontClient` is one."""

    @property
    def instances(self) -> InstancesLike: ...

    @property
    def blacklist(self) -> BlacklistLike: ...


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
        self._emit_lock = threading.Lock()

    def emit(self, kind: EventKind, **fields: Any) -> None:
        """Report one event (serialised: creates report from worker threads)."""
        if self.on_event is not None:
            with self._emit_lock:
                self.on_event(RaceEvent(kind, self.clock() - self.start, **fields))

    # --- offers ---------------------------------------------------------------------------

    def search(self) -> list[Offer]:
        request = self.request
        self.emit("search", message=request.describe())
        offers = self.api.instances.offers(**request.offer_filters())
        entries: list[BlacklistEntry]
        try:
            entries = self.api.blacklist.list()
        except NotFoundError:  # a server without the history database
            entries = []
        selection = select_offers(offers, request, active_blacklist(entries, self.wall_clock()))
        skipped = selection.blacklisted + selection.problematic
        self.emit(
            "offers",
            message=f"{plural(len(selection.offers), 'offer')} to race"
            + (
                f" ({plural(skipped, 'blacklisted or unreliable machine')} skipped)"
                if skipped
                else ""
            ),
        )
        if not selection.offers:
            raise self.explain_no_offers(selection)
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
            candidate.instance_id = instance.id
            candidate.created_at = self.clock()
            candidate.state = "loading"
            candidate.status = instance.actual
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

    def poll_batch(self, batch: list[Candidate]) -> tuple[Candidate, Instance] | None:
        """Poll until one of `batch` runs (the winner and its row), all fail, or time is up."""
        deadline = self.clock() + self.request.batch_timeout
        while True:
            racing = [c for c in batch if c.state == "loading"]
            if not racing:
                return None
            rows = {i.id: i for i in self.api.instances.list()}
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
                status = row.actual
                if status != candidate.status:
                    candidate.status = status
                    self.emit(
                        "status",
                        batch=candidate.batch,
                        offer=candidate.offer,
                        instance_id=candidate.instance_id,
                        status=status,
                    )
                if row.is_running:
                    candidate.state = "winner"
                    candidate.ready_at = self.clock()
                    return candidate, row
                if row.is_failed:
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
        winner_row: Instance | None = None
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
                won = self.poll_batch(batch)
                if won is not None:
                    winner, winner_row = won
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
            if winner is None or winner_row is None:
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
            winner=winner_row,
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

    def explain_no_offers(self, selection: Selection) -> DumontError:
        """Why nothing matches, in what is true: an unknown GPU (did you mean ...), or your own
        instances holding the matching machines; else which filter to loosen."""
        request = self.request
        gpu = request.gpu_name
        try:
            market = (
                MarketNames.of(
                    [  # cheapest and dearest first: every model of a market of 200 machines
                        offer
                        for order in ("dph_total", "-dph_total")
                        for offer in self.api.instances.offers(order_by=order, **MARKET_FILTERS)
                    ]
                )
                if gpu
                else None
            )
            mine = [
                i
                for i in self.api.instances.list()
                if not gpu or compact(i.gpu_name or "") == compact(gpu)
            ]
        except (ApiError, ConnectError):  # the explanation is a nicety: keep the plain one
            return no_offers_error(request, selection)
        if gpu and market is not None and not market.empty:
            known = {compact(name) for name in market.gpus}
            if compact(gpu) not in known:
                close = get_close_matches(compact(gpu), list(known), n=1, cutoff=0.5)
                named = {compact(name): name for name in market.gpus}
                return DumontError(
                    f"no GPU model {gpu!r} on the market",
                    f"did you mean {named[close[0]]!r}?"
                    if close
                    else f"use one of: {', '.join(market.gpus)}",
                )
        error = no_offers_error(request, selection)
        if mine:
            ids = ", ".join(str(i.id) for i in mine[:5]) + (", ..." if len(mine) > 5 else "")
            return DumontError(
                f"{error.message}; your own {plural(len(mine), 'instance')} ({ids}) hold "
                f"{gpu or 'GPU'} machines",
                f"delete one you no longer need (`dumont instance delete ID`), or {error.hint}",
            )
        return error

    def nobody_ready(self) -> DumontError:
        tried = self.candidates
        refused = sum(1 for c in tried if c.state == "create_failed")
        failed = sum(1 for c in tried if c.state in ("failed", "gone"))
        slow = sum(1 for c in tried if c.state == "cancelled")
        return DumontError(
            f"no machine became ready: {plural(len(tried), 'offer')} raced in "
            f"{plural(max((c.batch for c in tried), default=0), 'batch', 'batches')} "
            f"({refused} refused, "
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
            if row.label != self.request.label or row.id in known:
                continue
            owner = next((c for c in unknown if c.made(row)), None)
            if owner is not None and owner.instance_id is None:
                owner.instance_id = row.id
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
