"""The declarative commands: plan, apply, destroy, validate, ... (filled in by the core)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the declarative commands to the top-level app."""
