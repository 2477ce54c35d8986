"""Read the actual state: one paged list call sequence per kind, the kinds concurrently.

Never one GET per resource (invariant 3): `plan` over 500 jobs reads `GET /jobs/` in pages of
100 and `GET /instances` once, whatever the number of resources. Offers for prices are read
once per distinct search (`plan.cost.price_queries`: one per GPU type, not per resource).

    observed = observe(client, kinds_of(stack, ledger))
    plan = build_plan(stack, observed, ledger, options)
    fetch_offers(client, price_queries(stack, plan), observed)   # then build_plan again
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from dumont_plan.client import DumontClient
from dumont_plan.client.parallel import Background, read_all
from dumont_plan.errors import ApiError, DumontError, NotFoundError
from dumont_plan.kinds.ops import RegisteredOps, load_ops
from dumont_plan.kinds.registry import HANDLERS
from dumont_plan.plan.cost import query_key
from dumont_plan.plan.model import Observed
from dumont_plan.spec.stack import Stack
from dumont_plan.state.ledger import LedgerState
from dumont_plan.wire_models import Offer, WireModel

MAX_WORKERS = 4


def kinds_of(stack: Stack | None, state: LedgerState | None) -> list[str]:
    """The kinds to read: those in the spec and those in the ledger."""
    kinds = {r.kind for r in stack.resources.values()} if stack is not None else set()
    if state is not None:
        kinds.update(e.kind for e in state.resources.values())
    return sorted(k for k in kinds if k in HANDLERS)


def observe(
    client: DumontClient,
    kinds: Iterable[str],
    *,
    ops: Mapping[str, RegisteredOps] | None = None,
    ledger: LedgerState | None = None,
    prefetched: Prefetch | None = None,
) -> Observed:
    """Every live object of each kind, the kinds read concurrently (by the kinds' `ops`).

    With the `ledger`, a kind whose list may miss objects (a server that ignores `offset`)
    also reads the ledger's ids the list lacked one by one (`fill_missing`): "gone" only
    after a 404 for that id. `prefetched`: lists already under way (`Prefetch`); the kinds it
    reads are not read again. Those lists were read before the state, so an id of the state
    they lack may be younger than the list (an apply that ended in between): such an id, when
    its ledger entry changed since the lists were asked for, is read by itself, and "gone"
    only after a 404 (a plan with nothing gone, or gone long ago, asks nothing more).
    """
    wanted = sorted(set(kinds))
    ops = ops if ops is not None else load_ops(kinds=wanted)
    before = client.transport.request_count if prefetched is None else prefetched.before
    live = prefetched.result() if prefetched is not None else {}
    live.update(list_live(client, [k for k in wanted if k not in live], ops))
    for kind in wanted:
        fill = getattr(ops[kind], "fill_missing", None)
        if fill is not None and ledger is not None:
            ids = [e.remote_id for e in ledger.resources.values() if e.kind == kind]
            live[kind] = list(fill(client, live[kind], [i for i in ids if i]))
        if prefetched is not None and kind in prefetched.kinds and ledger is not None:
            live[kind] = younger_than_the_list(
                client, ops[kind], live[kind], ledger, prefetched.since
            )
    return Observed(
        live={k: live[k] for k in wanted},
        requests=client.transport.request_count - before,
        at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    )


def younger_than_the_list(
    client: DumontClient,
    ops: RegisteredOps,
    listed: list[WireModel],
    ledger: LedgerState,
    since: float,
) -> list[WireModel]:
    """`listed` (read from `since`, epoch seconds) plus the objects it lacks of the ledger's
    entries written since then that still exist (one GET each). An entry written before
    `since` whose id the list lacks is gone: the list was read after it was written."""
    handler = HANDLERS[ops.kind]
    have = {handler.live_id(obj) for obj in listed}
    found = list(listed)
    for entry in ledger.resources.values():
        if entry.kind != ops.kind or not entry.remote_id or entry.remote_id in have:
            continue
        if _epoch(entry.updated_at) < since - 1:  # the ledger keeps whole seconds
            continue
        have.add(entry.remote_id)
        try:
            found.append(ops.get(client, entry.remote_id))
        except NotFoundError:
            continue  # gone: the server said so for this id
    return found


def _epoch(stamp: str) -> float:
    """An ISO time of the ledger as epoch seconds (unreadable: now, so it is checked)."""
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return time.time()


def list_live(
    client: DumontClient, kinds: Sequence[str], ops: Mapping[str, RegisteredOps] | None = None
) -> dict[str, list[WireModel]]:
    """The list of each kind (the kinds concurrently); DumontError naming the kind that failed."""
    if not kinds:
        return {}
    ops = ops if ops is not None else load_ops(kinds=list(kinds))

    def read(kind: str) -> list[WireModel]:
        try:
            return list(ops[kind].list_live(client))
        except ApiError as exc:
            raise DumontError(
                f"cannot read the live {HANDLERS[kind].section}: {exc.message}",
                # The server's own fix when it named one (a missing provider key).
                exc.hint or "check the API URL and your login (`dumont auth me`)",
            ) from exc

    return dict(zip(kinds, read_all(read, kinds, MAX_WORKERS), strict=True))


class Prefetch:
    """The lists of some kinds, read in a background thread from the moment it is made.

    `dumont plan` starts it once the spec is loaded, so that the server answers while the
    state is read and the planner prepares (the reads are the same ones `observe` makes:
    one paged list per kind). `observe(..., prefetched=p)` takes the result, or raises what
    the reads raised. Reads nobody uses (the state could not be read) are abandoned: they run
    in daemon threads (client/parallel.py), so they never keep the process alive.
    """

    def __init__(
        self, client: DumontClient, kinds: Iterable[str], since: float | None = None
    ) -> None:
        self.kinds = sorted(set(kinds) & set(HANDLERS))
        self.before = client.transport.request_count
        # When the lists were first asked for (epoch seconds): now, or earlier when some
        # pages were read before this (cli/early.py).
        self.since = time.time() if since is None else since
        self._reads = Background(lambda: list_live(client, self.kinds), "dumont-prefetch")

    def result(self) -> dict[str, list[WireModel]]:
        return dict(self._reads.result())


SPOT_SEARCHES = frozenset({"interruptible", "bid"})


def spot_priced(offer: Offer) -> Offer:
    """An offer of a spot search as a spot price only: its `dph_total` is the spot rate (the
    real offer schema has no other field for it; the local control plane also sends
    `min_bid`), kept as `min_bid`, so that on-demand pricing never reads it as on-demand."""
    bid = offer.min_bid if offer.min_bid is not None else offer.dph_total
    return offer.model_copy(update={"min_bid": bid, "dph_total": None})


def fetch_offers(
    client: DumontClient, queries: Sequence[Mapping[str, Any]], observed: Observed
) -> Observed:
    """Add the offers of each not-yet-fetched search to `observed` (concurrently).

    A search that fails (e.g. a server without offers) leaves prices unknown rather than
    failing the plan: the plan then says which resources it could not price.
    """
    todo = [dict(q) for q in queries if query_key(q) not in observed.offer_queries]
    if not todo:
        return observed
    before = client.transport.request_count

    def one(query: dict[str, Any]) -> list[Offer]:
        try:
            offers = client.instances.offers(**query)
        except ApiError:
            return []
        if query.get("machine_type") in SPOT_SEARCHES:
            return [spot_priced(offer) for offer in offers]
        return offers

    results = read_all(one, todo, MAX_WORKERS)
    seen = {(o.id, o.dph_total) for o in observed.offers}
    for query, offers in zip(todo, results, strict=True):
        observed.offer_queries.append(query_key(query))
        for offer in offers:
            key = (offer.id, offer.dph_total)
            if key not in seen:
                seen.add(key)
                observed.offers.append(offer)
    observed.requests += client.transport.request_count - before
    return observed
