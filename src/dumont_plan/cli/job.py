"""`dumont job …` (filled in by its feature)."""

from __future__ import annotations

import typer

app = typer.Typer(help="job commands.", no_args_is_help=True)
