"""Entry point of `dumont`. `--version` answers without importing typer, httpx or pydantic."""

from __future__ import annotations

import sys

from dumont_plan import __version__


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args in (["--version"], ["-V"], ["version"]):
        print(f"dumont {__version__}")
        return 0
    # Deferred on purpose: the full CLI costs ~10x `python -c pass` to import (benchmarks/).
    from dumont_plan.cli.app import run

    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
