"""Run-once kinds (jobs, fine-tunes): `run_policy` decides when a finished run runs again.

How such a resource is planned (the ledger knows it):

| live object               | once                     | on_change            | always      |
|---------------------------|--------------------------|----------------------|-------------|
| finished, spec unchanged  | noop                     | noop                 | run         |
| finished, spec changed    | noop (note)              | run                  | run         |
| finished, a ref changed   | update (records, quiet)  | run                  | run         |
| failed/timeout/cancelled  | noop (lifecycle note)    | run                  | run         |
| active, spec changed      | noop (note)              | error, or replace with --allow-restart |
| gone from the server      | noop (note)              | run if changed       | run         |

`once` never runs it again by itself (the real platform forgets jobs on restart, so a gone
one is not re-run); `--replace ADDR` runs it again (an active one needs `--allow-restart`).
A kind names fields that only record (`record_only`: a change is an in-place update that
sends nothing) and how a change is said (`change_words`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from dumont_plan.kinds.base import BaseHandler, Live, format_elapsed, parse_time
from dumont_plan.kinds.decision import Action, Decision, FieldChange, Situation


class RunOnceHandler(BaseHandler[Live]):
    """Decisions of a kind whose objects run to an end; see the module doc."""

    runs_to_completion: ClassVar[bool] = True
    noun: ClassVar[str] = "job"  # in plan notes: "the server no longer lists this job"
    record_only: ClassVar[frozenset[str]] = frozenset()  # changed in the ledger only
    # The kind's statuses: after which it never changes, which of those are failures, and
    # which count as `wait: running` (with `completed`).
    finished_statuses: ClassVar[frozenset[str]] = frozenset()
    failed_statuses: ClassVar[frozenset[str]] = frozenset()
    running_statuses: ClassVar[frozenset[str]] = frozenset({"running"})

    # -- what the kind reports of a live run (its `id`, `status`, `started_at` ...) ---------

    def is_finished(self, live: Live) -> bool:
        return self.status(live) in self.finished_statuses

    def is_failed(self, live: Live) -> bool:
        return self.status(live) in self.failed_statuses

    def needs_delete(self, live: Live) -> bool:
        return not self.is_finished(live)

    def observed_view(self, live: Live | None) -> dict[str, Any]:
        if live is None:
            return {"present": False}
        phase = self.status(live) if self.is_finished(live) else "active"
        return {"present": True, "id": self.live_id(live), "phase": phase}

    def started_at(self, live: Live) -> str | None:
        value = live.raw.get("started_at") or live.raw.get("created_at")
        return str(value) if value else None

    def wait_done(self, live: Live, target: str) -> bool:
        status = self.status(live)
        if target == "none":
            return True
        if target == "running":
            return status in self.running_statuses or status == "completed"
        return status == "completed"

    def spent(self, live: Live) -> float | None:
        """What the run cost so far, when the server says (None: price x time is used)."""
        return None

    def change_words(self, changes: Sequence[FieldChange]) -> str:
        return ", ".join(c.field for c in changes)

    # -- decisions -------------------------------------------------------------------------

    def decide(self, situation: Situation[Live]) -> Decision:
        s = situation
        policy = str(s.controls.get("run_policy") or "once")
        runs = [c for c in s.changes if c.field not in self.record_only]
        changed = bool(runs)
        what = self.change_words(runs)
        if s.live is None:
            return self._decide_gone(s, policy, changed, what)
        status = self.status(s.live)
        if not self.is_finished(s.live):
            return self._decide_active(s, s.live, policy, changed, what, status)
        failed = self.is_failed(s.live)
        drift = "lifecycle" if failed else None
        if s.forced_replace:
            return Decision(Action.run, "--replace", drift=drift)
        if policy == "always":
            return Decision(Action.run, f"run_policy always (last run {status})", drift=drift)
        if policy == "on_change":
            if changed and all(c.via for c in runs):
                refs = ", ".join(sorted({r for c in runs for r in c.via}))
                return Decision(Action.run, f"{refs} changed ({what} reads differently)")
            if changed:
                return Decision(Action.run, f"spec changed ({what})", drift=drift)
            if failed:
                return Decision(Action.run, f"last run ended {status}", drift=drift)
            return self._record(s, status)
        if changed and all(c.via for c in runs) and not failed:
            # Only what references resolve to changed (a referenced instance was replaced):
            # recorded, so the next plans are quiet; the finished run is kept.
            refs = ", ".join(sorted({r for c in runs for r in c.via}))
            return Decision(
                Action.update,
                f"{refs} changed, so {what} now reads differently; run_policy once keeps the "
                "finished run (recorded in the state only)",
                notes=[f"use --replace {s.address} or run_policy: on_change to run it again"],
            )
        notes = []
        if changed:
            notes.append(
                f"spec changed ({what}); run_policy once keeps the finished run "
                f"(use --replace {s.address} or run_policy: on_change to run it again)"
            )
        if failed:
            notes.append(
                f"last run ended {status}; run_policy once does not run it again "
                f"(use --replace {s.address})"
            )
        decision = self._record(s, status)
        decision.drift, decision.notes = drift, notes
        return decision

    def _record(self, s: Situation[Live], status: str) -> Decision:
        """noop, or an update that only records the `record_only` fields that changed."""
        recorded = [c.field for c in s.changes if c.field in self.record_only]
        if recorded:
            return Decision(Action.update, ", ".join(recorded) + " (recorded in the state only)")
        return Decision(Action.noop, status)

    def _decide_gone(self, s: Situation[Live], policy: str, changed: bool, what: str) -> Decision:
        if s.forced_replace:
            return Decision(Action.run, "--replace", drift="gone")
        if policy == "always":
            return Decision(Action.run, "run_policy always", drift="gone")
        if policy == "on_change" and changed:
            return Decision(Action.run, f"spec changed ({what})", drift="gone")
        note = (
            f"the server no longer lists this {self.noun}; its run is kept as done "
            f"(use --replace {s.address} to run it again)"
        )
        return Decision(Action.noop, "gone from the server", drift="gone", notes=[note])

    def _decide_active(
        self,
        s: Situation[Live],
        live: Live,
        policy: str,
        changed: bool,
        what: str,
        status: str,
    ) -> Decision:
        restart = s.forced_replace or (changed and policy != "once")
        if restart:
            why = "--replace" if s.forced_replace else f"spec changed ({what})"
            if not s.allow_restart:
                return Decision(
                    Action.noop,
                    status,
                    error=(
                        f"{s.address} is {status} ({self.spend_text(live, s.price, s.now)}) "
                        f"and would be cancelled and started again: {why}; "
                        "re-run with --allow-restart to replace it, or wait until it finishes"
                    ),
                )
            return Decision(
                Action.replace,
                f"{why}; cancels the {status} run ({self.spend_text(live, s.price, s.now)})",
            )
        notes = []
        if changed:
            notes.append(f"spec changed ({what}) while {status}; run_policy once keeps this run")
        elif policy == "always":
            notes.append(f"still {status}; run_policy always runs it again once it finishes")
        return Decision(Action.noop, status, notes=notes)

    def spend_text(self, live: Live, price: float | None, now: datetime | None) -> str:
        """`for 3m12s, about $0.02 spent` (spend from the live cost or price x time)."""
        started = parse_time(self.started_at(live))
        if started is None:
            return "just started"
        elapsed = ((now or datetime.now(UTC)) - started).total_seconds()
        spent = self.spent(live)
        cost = spent if spent is not None and spent > 0 else None
        if cost is None and price is not None:
            cost = price * max(0.0, elapsed) / 3600
        text = f"for {format_elapsed(elapsed)}"
        if cost is not None:
            text += f", about ${cost:.2f} spent"
        return text
