"""What every benchmark shares: the result row, the registry, timing and a private server.

A benchmark is a function `(Options) -> list[Row]` registered with `@benchmark("name")` in a
module listed in `benchmarks.run.MODULES`. Each row compares a figure with a baseline or floor
measured in the same run (2 shared cores are noisy: only side-by-side ratios mean something) and
says whether it meets its target.

    @benchmark("plan")
    def plan_at_scale(opts: Options) -> list[Row]:
        floor = ...; measured = ...
        return [Row.ratio_row("plan: N=1000 wall", measured, floor, "s", "raw httpx + yaml", 1.5)]
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Options:
    quick: bool = False
    # Runs per command for interleaved timings (median taken).
    repeats: int = 15
    workdir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))


@dataclass
class Row:
    """One line of the table: a figure, what it is compared with, and the verdict."""

    name: str
    measured: float
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    ratio: float | None = None
    target: str = ""
    ok: bool | None = None  # None: informational, no target
    note: str = ""

    @classmethod
    def ratio_row(
        cls,
        name: str,
        measured: float,
        baseline: float,
        unit: str,
        baseline_label: str,
        max_ratio: float | None = None,
        min_ratio: float | None = None,
        note: str = "",
    ) -> Row:
        """A figure against its baseline: PASS when the ratio is within the bound(s)."""
        ratio = measured / baseline if baseline else float("inf")
        checks: list[bool] = []
        target = []
        if max_ratio is not None:
            checks.append(ratio <= max_ratio)
            target.append(f"<= {max_ratio:g}x")
        if min_ratio is not None:
            checks.append(ratio >= min_ratio)
            target.append(f">= {min_ratio:g}x")
        return cls(
            name,
            measured,
            unit,
            baseline,
            baseline_label,
            ratio,
            " and ".join(target),
            all(checks) if checks else None,
            note,
        )

    @property
    def verdict(self) -> str:
        return "-" if self.ok is None else ("PASS" if self.ok else "MISS")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}


BenchmarkFn = Callable[[Options], list[Row]]
BENCHMARKS: dict[str, BenchmarkFn] = {}


def benchmark(name: str) -> Callable[[BenchmarkFn], BenchmarkFn]:
    """Register a benchmark under `name` (what `--only` selects)."""

    def register(fn: BenchmarkFn) -> BenchmarkFn:
        if name in BENCHMARKS:
            raise RuntimeError(f"benchmark {name!r} registered twice")
        BENCHMARKS[name] = fn
        return fn

    return register


# ------------------------------------------------------------------------------ timing


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def time_commands_interleaved(
    commands: dict[str, list[str]],
    repeats: int,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    cpu: dict[str, list[float]] | None = None,
    env_of: dict[str, dict[str, str]] | None = None,
) -> dict[str, list[float]]:
    """Wall seconds of each command, run in turn `repeats` times (one warm-up round first).

    Interleaving spreads the machine's load changes over every command alike. With `cpu`,
    each command's CPU seconds (user + system of the process and its children) are appended
    there too: on shared cores they vary far less than wall time. `env_of`: the environment
    of some commands by name (the others get `env`).
    """
    times: dict[str, list[float]] = {name: [] for name in commands}
    for round_ in range(repeats + 1):
        for name, argv in commands.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            done = subprocess.run(
                argv,
                env=(env_of or {}).get(name, env),
                cwd=cwd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            elapsed = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if cpu is not None and round_:
                used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                cpu.setdefault(name, []).append(used)
            if done.returncode != 0:
                raise RuntimeError(
                    f"{name}: {' '.join(argv)} exited {done.returncode}: "
                    + done.stderr.decode(errors="replace")[-500:]
                )
            if round_:
                times[name].append(elapsed)
    return times


def clean_env(home: Path) -> dict[str, str]:
    """The environment of a user with a fresh HOME and no dumont settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DUMONT_", "XDG_")) and k not in ("HOME", "PYTHONPROFILEIMPORTTIME")
    }
    env.update(HOME=str(home), NO_COLOR="1", COLUMNS="120")
    return env


# ------------------------------------------------------------------------------ a private server


@dataclass
class Server:
    url: str
    data_dir: Path
    proc: subprocess.Popen[bytes]


@contextlib.contextmanager
def local_server(
    data_dir: Path, *extra_args: str, timeout: float = 30.0, multi_user: bool = True
) -> Iterator[Server]:
    """A `python -m dumont_plan.server` on a free loopback port, stopped (whole group) at exit.

    Multi-user by default: the benchmarks register users of their own."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port_file = data_dir / "bench-server.port.json"
    log_path = data_dir / "bench-server.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dumont_plan.server",
                "--data-dir",
                str(data_dir),
                "--port",
                "0",
                "--port-file",
                str(port_file),
                *(["--multi-user"] if multi_user else []),
                *extra_args,
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        url = ""
        while not url:
            if proc.poll() is not None:
                raise RuntimeError("server exited: " + log_path.read_text()[-2000:])
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start in time")
            if port_file.exists():
                candidate = f"http://127.0.0.1:{json.loads(port_file.read_text())['port']}"
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(candidate + "/health", timeout=1).status_code == 200:
                        url = candidate
            if not url:
                time.sleep(0.05)
        yield Server(url, data_dir, proc)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def compile_package() -> None:
    """Byte-compile dumont_plan as `pip install` does, so that no timed run compiles it.

    An editable install run with PYTHONDONTWRITEBYTECODE (as on the shared benchmark machine)
    never writes bytecode, so every timed `dumont` process compiled each module it imported
    (about 90 ms of CPU for `plan`), while the floor's httpx and yaml had theirs from their
    install. An installed dumont-plan has its bytecode too.
    """
    import compileall

    import dumont_plan

    compileall.compile_dir(Path(dumont_plan.__file__).parent, quiet=1)


@contextlib.contextmanager
def scratch_dir(opts: Options, prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"dumont-bench-{prefix}-", dir=opts.workdir))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def register_user(url: str, email: str, password: str = "bench-password-1") -> str:
    """Register `email` on the server at `url`; returns its bearer token."""
    response = httpx.post(
        url + "/api/v1/auth/register", json={"email": email, "password": password}, timeout=60
    )
    response.raise_for_status()
    token: str = response.json()["token"]
    return token


def poll_json(
    http: httpx.Client,
    path: str,
    done: Callable[[Any], Any],
    timeout: float = 120.0,
    interval: float = 0.05,
) -> dict[str, Any]:
    """GET `path` until `done(body)` is true (every `interval`); RuntimeError past `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = http.get(path).json()
        if done(body):
            return body
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} stuck: {body}")
        time.sleep(interval)
