"""Run the benchmarks: `python -m benchmarks.run [--quick] [--only NAME ...] [--markdown PATH]`.

Prints one table (figure, baseline or floor measured in the same run, ratio, target, PASS/MISS)
and writes benchmarks/results.json. Exit code 1 when a target is missed or a benchmark fails.
To add a benchmark, register a function in a module with `@benchmark("name")` and list the
module in MODULES.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from benchmarks.common import BENCHMARKS, Options, Row

MODULES = [
    "benchmarks.startup",
    "benchmarks.server_load",
    "benchmarks.bench_plan",
    "benchmarks.bench_apply",
    "benchmarks.bench_graph",
    "benchmarks.bench_isolation",
    "benchmarks.bench_spot",
    "benchmarks.bench_finetune",
    "benchmarks.bench_serverless",
    "benchmarks.bench_endpoints",
]

RESULTS_JSON = Path(__file__).with_name("results.json")


def load_benchmarks() -> None:
    for module in MODULES:
        importlib.import_module(module)


def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("ms", "s", "req/s", "MB") or not float(value).is_integer():
        text = f"{value:,.1f}" if abs(value) < 1000 else f"{value:,.0f}"
    else:
        text = f"{int(value):,}"
    return f"{text} {unit}".strip()


def table(rows: list[tuple[str, Row]]) -> str:
    header = ["benchmark", "measured", "baseline / floor", "ratio", "target", "result"]
    lines = [header]
    for _, row in rows:
        baseline = fmt_value(row.baseline, row.unit)
        if row.baseline is not None and row.baseline_label:
            baseline += f" ({row.baseline_label})"
        lines.append(
            [
                row.name,
                fmt_value(row.measured, row.unit),
                baseline,
                "-" if row.ratio is None else f"{row.ratio:.2f}x",
                row.target or "-",
                row.verdict,
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for i, line in enumerate(lines):
        out.append("  ".join(cell.ljust(widths[j]) for j, cell in enumerate(line)).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    notes = [f"  {row.name}: {row.note}" for _, row in rows if row.note]
    if notes:
        out += ["", "notes:", *notes]
    return "\n".join(out)


def markdown(rows: list[tuple[str, Row]], meta: dict[str, Any]) -> str:
    out = [
        "# Benchmark results",
        "",
        f"`python -m benchmarks.run{' --quick' if meta['quick'] else ''}` on "
        f"{meta['machine_note']} ({meta['platform']}, Python {meta['python']}), {meta['date']}. "
        "Every ratio compares two figures measured side by side in the same run.",
        "",
        "| benchmark | measured | baseline / floor | ratio | target | result |",
        "|---|---|---|---|---|---|",
    ]
    for _, row in rows:
        baseline = fmt_value(row.baseline, row.unit)
        if row.baseline is not None and row.baseline_label:
            baseline += f" ({row.baseline_label})"
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}x"
        out.append(
            f"| {row.name} | {fmt_value(row.measured, row.unit)} | {baseline} | {ratio} "
            f"| {row.target or '-'} | {row.verdict} |"
        )
    notes = [f"- {row.name}: {row.note}" for _, row in rows if row.note]
    if notes:
        out += ["", *notes]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke check)")
    parser.add_argument(
        "--only", action="append", metavar="NAME", help="run only this benchmark (repeatable)"
    )
    parser.add_argument("--json", type=Path, default=RESULTS_JSON, help="results file")
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown here")
    parser.add_argument(
        "--machine-note",
        default=f"{os.cpu_count()} cores",
        help='how to describe the machine in the Markdown (e.g. "2 shared cores")',
    )
    args = parser.parse_args(argv)

    load_benchmarks()
    names = args.only or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    opts = Options(quick=args.quick)

    rows: list[tuple[str, Row]] = []
    failed: list[str] = []
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        start = time.monotonic()
        try:
            produced = BENCHMARKS[name](opts)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        print(f"  {name} done in {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
        rows += [(name, row) for row in produced]

    meta = {
        "quick": args.quick,
        "date": time.strftime("%Y-%m-%d"),
        "platform": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "machine_note": args.machine_note,
    }
    print(table(rows))
    args.json.write_text(
        json.dumps({**meta, "rows": [{"benchmark": n, **r.as_dict()} for n, r in rows]}, indent=2)
        + "\n",
        encoding="utf-8",
    )
    if args.markdown:
        args.markdown.write_text(markdown(rows, meta), encoding="utf-8")
    missed = [row.name for _, row in rows if row.ok is False]
    if failed:
        print(f"\nfailed to run: {', '.join(failed)}", file=sys.stderr)
    if missed:
        print(f"\ntargets missed: {', '.join(missed)}", file=sys.stderr)
    return 1 if failed or missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
