"""The `dumont` command line (typer lives only here)."""
