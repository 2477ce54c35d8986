"""Job supervision on the local machine (filled in by the Jobs feature)."""

from __future__ import annotations

from dumont_plan.server.context import AppState


def reconcile_jobs(state: AppState) -> None:
    """One supervision pass over the jobs (called by the reconciler loop)."""
