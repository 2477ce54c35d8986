"""Entry point of `dumont`. `--version` answers without importing typer, httpx or pydantic."""

from __future__ import annotations

import atexit
import gc
import sys
from typing import TYPE_CHECKING

from dumont_plan import __version__

if TYPE_CHECKING:
    from dumont_plan.cli.early import EarlyReads


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args in (["--version"], ["-V"], ["version"]):
        print(f"dumont {__version__}")
        return 0
    try:
        if argv is None:  # this process is `dumont` (not a caller running it in-process)
            tune_gc_for_a_cli()
            skip_httpx_command_line()
            start_early_reads(args)
        # Deferred on purpose: the full CLI costs ~5x `python -c pass` to import (benchmarks/).
        from dumont_plan.cli.app import run
    except KeyboardInterrupt:  # Ctrl-C while the CLI loads: as run() answers it later
        print("Interrupted.", file=sys.stderr)
        return 130
    return run(args)


def tune_gc_for_a_cli() -> None:
    """Start-up builds a few hundred thousand long-lived objects (typer, pydantic models).

    With the default threshold (700) the collector walks them ~80 times for nothing, and once
    more at exit. Collections still run, only less often; at exit the objects are frozen so the
    interpreter's last collection skips them (benchmarks/startup.py: `dumont validate` ~3x
    `python -c pass` faster).
    """
    global _CLI_PROCESS
    _CLI_PROCESS = True
    gc.set_threshold(100_000, 10, 10)
    atexit.register(gc.freeze)


_CLI_PROCESS = False


def skip_httpx_command_line() -> None:
    """`import httpx` also imports httpx's own command-line tool (`httpx._main`) whenever
    click, rich and pygments are installed, as typer brings them: click, pygments and half of
    rich (progress, syntax, live) for a tool dumont never runs, ~30 ms of every command that
    calls the API. Marking the module absent makes httpx take its documented fallback (an
    `httpx.main` that explains the CLI is not installed); nothing else of httpx changes.
    """
    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


_EARLY: EarlyReads | None = None


def start_early_reads(args: list[str]) -> None:
    """`dumont plan`: ask for the job list now, while the CLI loads (cli/early.py)."""
    global _EARLY
    if "plan" not in args:
        return
    from dumont_plan.cli.early import start

    _EARLY = start(args)


def early_reads() -> EarlyReads | None:
    """The reads `start_early_reads` started in this process, if any."""
    return _EARLY


def imports_done() -> None:
    """A command calls this once its heavy modules are imported (typer, pydantic models, httpx).

    They live until exit: frozen, the collector stops walking them, so the one collection a
    `plan` of 1,000 resources used to make (~20 ms over every module object) walks only what
    the command built since. Only in a `dumont` process (not when main() runs in-process).
    """
    if _CLI_PROCESS:
        gc.freeze()


if __name__ == "__main__":
    raise SystemExit(main())
