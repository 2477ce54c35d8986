"""CLI start-up: `dumont --version`, `--help` and `validate` against `python -c pass`.

Each command runs as a user runs it (the `dumont` console script of this interpreter, a fresh
HOME), interleaved with the baseline; the figure is the median wall time of the runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

from benchmarks.common import (
    Options,
    Row,
    benchmark,
    clean_env,
    median,
    scratch_dir,
    time_commands_interleaved,
)

# (name, args, max ratio to `python -c pass`)
COMMANDS: list[tuple[str, list[str], float]] = [
    ("dumont --version", ["--version"], 3),
    ("dumont --help", ["--help"], 10),
    ("dumont validate (10 jobs)", ["validate", "-f", "dumont.yaml"], 15),
]
# What the dependencies alone cost (informational): the floor under each command above.
FLOORS: list[tuple[str, str, str]] = [
    ("floor: import typer", "import typer", "under every command but --version"),
    (
        "floor: typer + its rich help",
        "import typer, typer.rich_utils",
        "under --help (typer renders help with rich, markdown-it, pygments)",
    ),
    (
        "floor: typer + pydantic + yaml + jinja2",
        "import typer, yaml, jinja2; from pydantic import BaseModel, TypeAdapter",
        "under validate (typer 0.29 coerces options with pydantic; the spec is pydantic)",
    ),
]


def dumont_argv() -> list[str]:
    """The `dumont` console script beside this interpreter, else `python -m dumont_plan`."""
    script = Path(sys.executable).parent / "dumont"
    return [str(script)] if script.exists() else [sys.executable, "-m", "dumont_plan"]


def ten_job_spec() -> str:
    lines = ["version: 1", "project: bench", "jobs:"]
    for i in range(10):
        lines += [
            f"  job{i}:",
            f'    command: "python train.py --shard {i}"',
            '    gpu_type: "RTX 4090"',
            "    timeout_minutes: 60",
        ]
    return "\n".join(lines) + "\n"


@benchmark("startup")
def startup(opts: Options) -> list[Row]:
    repeats = 5 if opts.quick else opts.repeats
    with scratch_dir(opts, "startup") as tmp:
        home = tmp / "home"
        home.mkdir()
        (tmp / "dumont.yaml").write_text(ten_job_spec(), encoding="utf-8")
        commands = {"python -c pass": [sys.executable, "-c", "pass"]}
        for name, args, _ in COMMANDS:
            commands[name] = [*dumont_argv(), *args]
        for name, code, _ in FLOORS:
            commands[name] = [sys.executable, "-c", code]
        times = time_commands_interleaved(commands, repeats, env=clean_env(home), cwd=tmp)
    floor = median(times["python -c pass"]) * 1000
    rows = [
        Row("python -c pass", floor, "ms", note=f"baseline, median of {repeats}"),
    ]
    for name, _, limit in COMMANDS:
        rows.append(
            Row.ratio_row(
                name, median(times[name]) * 1000, floor, "ms", "python -c pass", max_ratio=limit
            )
        )
    for name, _, note in FLOORS:
        rows.append(
            Row.ratio_row(
                name, median(times[name]) * 1000, floor, "ms", "python -c pass", note=note
            )
        )
    return rows
