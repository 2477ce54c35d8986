"""Plan at scale: `dumont plan` over N already-applied jobs vs the floor, measured side by side.

For each N (100, 1,000, 10,000; `--quick`: 100 and 1,000) a private local control plane holds
N finished jobs of one user and a spec folder holds the matching `dumont.yaml` and ledger, so
`dumont plan` has nothing to change (checked: `--detailed-exitcode` exits 0). Creating 10,000
jobs through the API would start 10,000 runner processes, so the state is seeded instead:

- the jobs are rows of the server's SQLite database, written with the columns and values
  `POST /api/v1/jobs/` writes for a job that completed (`provider.jobs.submit_job` + runner);
- the ledger is written through the ledger API, each entry's record computed by
  `apply.resolve.resolve_body`, exactly what `apply` records after a create.

Figures per N:
- wall time of `dumont plan` (the console script, a fresh HOME, DUMONT_API_URL + DUMONT_TOKEN)
  against the floor, interleaved. Both are whole processes, timed from spawn to exit: the floor
  is a fresh `python` (the same interpreter) that imports httpx and yaml, parses the same YAML
  with `yaml.CSafeLoader` and makes the same paged `GET /api/v1/jobs/` calls through one
  `httpx.Client` (same page size). So interpreter start, the HTTP stack's import and the
  server's time count on both sides; what only the plan pays is its CLI (typer, rich), its
  models (pydantic) and its own work per resource (validation, planning, fingerprints).
  The plan reads the job list in a forked reader while it loads (cli/early.py): its CPU row
  counts that process too, and the same plan with DUMONT_EARLY_READS=0 is timed in the same
  rounds, so the rows show what the reader changes;
- HTTP requests the plan makes (the server's `_local/stats`), against the pages the floor reads;
- peak RSS of the `dumont plan` process (`ru_maxrss`, from a small process that forks it).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.common import (
    Options,
    Row,
    Server,
    benchmark,
    clean_env,
    compile_package,
    local_server,
    median,
    register_user,
    scratch_dir,
    time_commands_interleaved,
)
from benchmarks.startup import dumont_argv
from dumont_plan.apply.resolve import resolve_body
from dumont_plan.cli.early import SWITCH as EARLY_READS_SWITCH
from dumont_plan.client.jobs import PAGE_SIZE
from dumont_plan.loader import load_stack
from dumont_plan.secrets import SecretStore
from dumont_plan.state.ledger import Ledger, LedgerEntry, default_state_path, now_iso

PROJECT = "scale"
MAX_RATIO_AT_1000 = 1.5
MAX_RSS_MB_AT_10000 = 250.0

FLOOR_SCRIPT = """
import sys
import httpx
import yaml

url, token, spec, page_size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with open(spec, encoding="utf-8") as handle:
    yaml.load(handle, Loader=yaml.CSafeLoader)
headers = {"Authorization": f"Bearer {token}"}
with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
    offset = 0
    while True:
        response = http.get("/api/v1/jobs/", params={"limit": page_size, "offset": offset})
        response.raise_for_status()
        page = response.json()
        got = len(page["jobs"])
        offset += got
        if got < page_size or offset >= page["total"]:
            break
"""


def spec_text(n: int) -> str:
    """N jobs with a few fields each, as a team's generated spec would have them."""
    lines = [
        "version: 1",
        f"project: {PROJECT}",
        "defaults:",
        "  job: {timeout_minutes: 60, use_spot: true}",
        "jobs:",
    ]
    for i in range(n):
        lines += [
            f"  shard-{i:05d}:",
            f'    command: "python train.py --shard {i} --of {n}"',
            f'    gpu_type: "{"RTX 4090" if i % 2 else "A100"}"',
            "    pip_packages: [numpy]",
        ]
    return "\n".join(lines) + "\n"


def seed(server: Server, email: str, folder: Path, n: int) -> None:
    """N completed jobs in the server's database and the ledger that applied them."""
    spec_path = folder / "dumont.yaml"
    spec_path.write_text(spec_text(n), encoding="utf-8")
    stack = load_stack([spec_path], folder)
    ledger = Ledger.load(default_state_path(folder), stack.project)
    secrets = SecretStore({}, [])
    now = time.time()
    rows: list[tuple[Any, ...]] = []
    stamp = now_iso()
    for i, resource in enumerate(stack.resources.values()):
        resolved = resolve_body(resource, stack.project, {}, secrets, ledger.state.salt)
        body = resolved.body
        job_id = f"job_{uuid.uuid4().hex[:8]}"
        created = now - 3600 + i * 0.01
        rows.append(
            (
                job_id,
                body["name"],
                body.get("source", "command"),
                body["gpu_type"],
                body["num_gpus"],
                int(body["use_spot"]),
                0.35,
                body["timeout_minutes"],
                body["timeout_minutes"] * 60.0,
                body["max_retries"],
                created,
                created + 1,
                created + 2,
            )
        )
        ledger.state.resources[resource.address] = LedgerEntry(
            kind=resource.kind,
            remote_id=job_id,
            remote_name=body["name"],
            applied_spec=dict(resolved.record.applied_spec),
            prevent_destroy=resolved.record.prevent_destroy,
            depends_on=list(resolved.record.depends_on),
            created_at=stamp,
            updated_at=stamp,
            last_run_at=stamp,
            run_count=1,
        )
    ledger.save()  # once, through the ledger API (apply saves after every operation)
    db = sqlite3.connect(server.data_dir / "dumont.sqlite3", timeout=30)
    try:
        (user_id,) = db.execute("SELECT id FROM users WHERE email = ?", (email,)).fetchone()
        with db:
            db.executemany(
                "INSERT INTO jobs (id, user_id, name, source, gpu_type, num_gpus, use_spot,"
                " price_per_hour, timeout_minutes, timeout_seconds, max_retries, has_hf_token,"
                " status, attempt, exit_code, created_ts, started_ts, completed_ts)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 'completed', 1, 0, ?, ?, ?)",
                [(r[0], user_id, *r[1:]) for r in rows],
            )
    finally:
        db.close()


def api_requests(server: Server) -> int:
    """API requests the server has counted so far (test hooks and /health left out)."""
    import httpx

    counts = httpx.get(server.url + "/api/v1/_local/stats", timeout=30).json()["requests"]
    return sum(n for key, n in counts.items() if "/api/" in key and "/_local/" not in key)


# ru_maxrss of a child starts at its parent's peak (Linux keeps it across fork and exec), and
# this process holds a whole spec and ledger: a small fresh process forks the measured one.
RSS_WRAPPER = """
import os, sys
pid = os.fork()
if pid == 0:
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def peak_rss_mb(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    """Peak RSS of one run of `argv` (that process alone; KiB on Linux)."""
    done = subprocess.run(
        [sys.executable, "-c", RSS_WRAPPER, *argv],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-500:]}")
    return int(done.stdout.strip()) / 1024


def one_scale(opts: Options, n: int) -> tuple[list[Row], float, float]:
    """The rows for N, and the median wall times of the plan and the floor."""
    repeats = 3 if opts.quick or n >= 10_000 else 5
    with scratch_dir(opts, f"plan{n}") as tmp:
        home = tmp / "home"
        home.mkdir()
        folder = tmp / "spec"
        folder.mkdir()
        with local_server(tmp / "server", "--test-hooks") as server:
            email = f"plan-{n}@example.com"
            token = register_user(server.url, email)
            started = time.monotonic()
            seed(server, email, folder, n)
            seeded = time.monotonic() - started
            env = {**clean_env(home), "DUMONT_API_URL": server.url, "DUMONT_TOKEN": token}
            plan = [*dumont_argv(), "plan"]
            check = subprocess.run(
                [*plan, "--detailed-exitcode"], env=env, cwd=folder, capture_output=True, text=True
            )
            if check.returncode != 0:
                raise RuntimeError(
                    f"N={n}: the seeded state is not 'no changes' (exit {check.returncode}): "
                    + (check.stdout[-800:] + check.stderr[-800:])
                )
            floor_argv = [
                sys.executable,
                "-c",
                FLOOR_SCRIPT,
                server.url,
                token,
                str(folder / "dumont.yaml"),
                str(PAGE_SIZE),
            ]
            before = api_requests(server)
            subprocess.run(plan, env=env, cwd=folder, check=True, stdout=subprocess.DEVNULL)
            plan_requests = api_requests(server) - before
            before = api_requests(server)
            subprocess.run(floor_argv, env=env, check=True)
            floor_requests = api_requests(server) - before
            cpu: dict[str, list[float]] = {}
            times = time_commands_interleaved(
                {"plan": plan, "plan, early reads off": plan, "floor": floor_argv},
                repeats,
                env=env,
                cwd=folder,
                cpu=cpu,
                env_of={"plan, early reads off": {**env, EARLY_READS_SWITCH: "0"}},
            )
            rss = peak_rss_mb(plan, env, folder)
            floor_rss = peak_rss_mb(floor_argv, env, folder)
    plan_s, floor_s = median(times["plan"]), median(times["floor"])
    label = "httpx pages + CSafeLoader"
    rows = [
        Row.ratio_row(
            f"plan: N={n:,} wall",
            plan_s * 1000,
            floor_s * 1000,
            "ms",
            label,
            max_ratio=MAX_RATIO_AT_1000 if n == 1000 else None,
            note=(
                f"median of {repeats}, interleaved, both whole processes (the floor: python "
                "start, import httpx + yaml, the pages, CSafeLoader); state seeded in "
                f"{seeded:.1f} s. Only the plan pays its CLI and models (the startup `floor:` "
                "rows: typer, pydantic, jinja2)"
            ),
        ),
        Row.ratio_row(
            f"plan: N={n:,} CPU",
            median(cpu["plan"]) * 1000,
            median(cpu["floor"]) * 1000,
            "ms",
            label,
            note=(
                "user + system CPU of each process and its children (the same runs as the "
                "wall row; the plan's early reader included); the server's work is in "
                "neither, so this ratio is above the wall one"
            ),
        ),
        Row.ratio_row(
            f"plan: N={n:,} wall, early reads off",
            median(times["plan, early reads off"]) * 1000,
            floor_s * 1000,
            "ms",
            label,
            note=(
                f"{EARLY_READS_SWITCH}=0, in the same rounds: the job list read by the plan "
                "itself after it loaded (cli/early.py otherwise reads it in a forked reader "
                "while the CLI loads)"
            ),
        ),
        Row.ratio_row(
            f"plan: N={n:,} CPU, early reads off",
            median(cpu["plan, early reads off"]) * 1000,
            median(cpu["floor"]) * 1000,
            "ms",
            label,
            note="the same runs as the row above",
        ),
        Row.ratio_row(
            f"plan: N={n:,} requests",
            plan_requests,
            floor_requests,
            "",
            "list pages",
            note=(
                f"the floor reads {floor_requests} GET /api/v1/jobs/ pages of {PAGE_SIZE}; "
                f"the plan makes {plan_requests - floor_requests} more"
            ),
        ),
    ]
    rss_row = Row.ratio_row(
        f"plan: N={n:,} peak RSS", rss, floor_rss, "MB", "the floor process", note="ru_maxrss"
    )
    if n >= 10_000:
        rss_row.target = f"< {MAX_RSS_MB_AT_10000:g} MB"
        rss_row.ok = rss < MAX_RSS_MB_AT_10000
    rows.append(rss_row)
    return rows, plan_s, floor_s


def sizes(opts: Options) -> list[int]:
    return [100, 1000] if opts.quick else [100, 1000, 10_000]


@benchmark("plan")
def plan_at_scale(opts: Options) -> list[Row]:
    rows: list[Row] = []
    walls: dict[int, tuple[float, float]] = {}
    compile_package()
    for n in sizes(opts):
        print(f"  plan: N={n}", file=sys.stderr, flush=True)
        produced, plan_s, floor_s = one_scale(opts, n)
        rows += produced
        walls[n] = (plan_s, floor_s)
    # What each resource adds, start-up left out: the slope between the two largest sizes.
    small, big = sorted(walls)[-2:]
    (p_small, f_small), (p_big, f_big) = walls[small], walls[big]
    rows.append(
        Row.ratio_row(
            f"plan: cost per resource (N={small:,} -> {big:,})",
            (p_big - p_small) / (big - small) * 1e6,
            (f_big - f_small) / (big - small) * 1e6,
            "µs",
            "the floor's",
            note=(
                f"(wall at {big:,} - wall at {small:,}) / {big - small:,}: what one more "
                "resource costs, start-up left out"
            ),
        )
    )
    return rows
