"""Instance sandboxes on the local machine (filled in by the Instances feature)."""

from __future__ import annotations

from dumont_plan.server.context import AppState


def reconcile_instances(state: AppState) -> None:
    """One supervision pass over the instances (called by the reconciler loop)."""
