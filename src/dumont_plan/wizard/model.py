"""What a race reports: its progress events, the offers it raced and its result."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from dumont_plan.wire_models import Instance, Offer

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
    offer: Offer | None = None
    instance_id: int | None = None
    status: str | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "elapsed": round(self.elapsed, 3)}
        if self.batch:
            out["batch"] = self.batch
        if self.offer is not None:
            out["offer_id"] = self.offer.id
            out["gpu_name"] = self.offer.raw.get("gpu_name")
            out["dph_total"] = self.offer.raw.get("dph_total")
        for key in ("instance_id", "status"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.message:
            out["message"] = self.message
        return out


EventSink = Callable[[RaceEvent], None]


CandidateState = Literal[
    "creating", "create_failed", "loading", "running", "failed", "gone", "cancelled", "winner"
]


@dataclass
class Candidate:
    """One offer raced: its instance (once created) and where it got to."""

    offer: Offer
    batch: int
    state: CandidateState = "creating"
    instance_id: int | None = None
    status: str | None = None
    error: str | None = None
    created_at: float | None = None
    ready_at: float | None = None
    deleted: bool = False
    unknown: bool = False  # the create had no definite answer: its machine may exist

    def made(self, row: Instance) -> bool:
        """Whether the listed instance `row` was rented from this candidate's offer."""
        if row.offer_id is not None:
            return str(row.offer_id) == str(self.offer_id)
        machine = self.offer.machine_id
        return machine is not None and str(row.machine_id) == machine

    @property
    def offer_id(self) -> int:
        return self.offer.id


@dataclass(frozen=True)
class RaceResult:
    """The race's outcome: the winner, what was tried and deleted, and how long it took."""

    winner: Instance
    offer: Offer
    batch: int
    candidates: list[Candidate]
    losers: list[int]  # instances created by the race and deleted because another won
    failed: list[int]  # instances that failed to boot (deleted)
    undeleted: list[int] = field(default_factory=list)  # deletes that failed: delete by hand!
    timings: dict[str, float] = field(default_factory=dict)  # search, ready, total (seconds)

    @property
    def instance_id(self) -> int:
        return self.winner.id

    def to_dict(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "winner": self.winner.raw,
            "offer": self.offer.raw,
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
