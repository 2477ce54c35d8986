"""The embedded default: with no URL configured, `dumont` starts and shares a local server."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dumont_plan.cli import embedded
from tests.support import cli_env, run_cli

pytestmark = pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")


def server_pids(data_dir: Path) -> list[int]:
    """Live `dumont_plan.server` processes serving `data_dir` (zombies excluded)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_bytes().rpartition(b")")[2].split()[0]
        except (OSError, IndexError):
            continue
        if state != b"Z" and b"dumont_plan.server" in argv and str(data_dir).encode() in argv:
            found.append(int(entry.name))
    return sorted(found)


class Home:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.env = cli_env(path)  # no DUMONT_API_URL, no DUMONT_TOKEN
        self.data_dir = path / ".local" / "share" / "dumont-plan"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(list(args), self.env)

    def record(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.data_dir / "server.json").read_text())
        return data


@pytest.fixture
def fresh_home(home: Path) -> Iterator[Home]:
    """A clean HOME; whatever server a test starts there is stopped afterwards."""
    h = Home(home)
    yield h
    embedded.stop_server(h.data_dir)
    for pid in server_pids(h.data_dir):  # a second server would be a bug; never leave it
        os.kill(pid, signal.SIGKILL)


def test_auth_me_starts_and_reuses_a_local_server(fresh_home: Home) -> None:
    first = fresh_home.run("auth", "me")
    assert first.returncode == 0, first.stderr
    assert first.stdout.split() == ["email", embedded.LOCAL_EMAIL, "authenticated", "True"]

    record = fresh_home.record()
    assert record["url"] == f"http://127.0.0.1:{record['port']}"
    assert server_pids(fresh_home.data_dir) == [record["pid"]]
    health = httpx.get(record["url"] + "/health", timeout=5).json()
    assert health["status"] == "healthy"
    for name in ("server.json", "local-user.json", "jwt-secret"):
        assert stat.S_IMODE((fresh_home.data_dir / name).stat().st_mode) == 0o600, name
    creds = json.loads((fresh_home.path / ".config/dumont-plan/credentials.json").read_text())
    assert creds["local"]["user"] == embedded.LOCAL_EMAIL

    second = fresh_home.run("auth", "me", "--output", "json")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["user"]["email"] == embedded.LOCAL_EMAIL
    assert fresh_home.record()["pid"] == record["pid"]
    assert server_pids(fresh_home.data_dir) == [record["pid"]]


@pytest.mark.slow
def test_a_refused_local_token_logs_in_again(fresh_home: Home) -> None:
    assert fresh_home.run("auth", "me").returncode == 0
    path = fresh_home.path / ".config/dumont-plan/credentials.json"
    path.write_text(json.dumps({"local": {"token": "stale.but.ascii", "user": "x"}}))
    again = fresh_home.run("auth", "me")
    assert again.returncode == 0, again.stderr
    assert embedded.LOCAL_EMAIL in again.stdout
    assert json.loads(path.read_text())["local"]["token"] != "stale.but.ascii"


@pytest.mark.slow
def test_two_concurrent_first_commands_share_one_server(fresh_home: Home) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "dumont_plan", "auth", "me", "--output", "json"],
            env=fresh_home.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert json.loads(out)["user"]["email"] == embedded.LOCAL_EMAIL
    record = fresh_home.record()
    assert server_pids(fresh_home.data_dir) == [record["pid"]]


@pytest.mark.slow
def test_server_start_status_stop(fresh_home: Home) -> None:
    stopped = fresh_home.run("server", "status", "--output", "json")
    assert stopped.returncode == 3, stopped.stderr  # as `pg_ctl status`
    assert json.loads(stopped.stdout) == {
        "running": False,
        "url": None,
        "pid": None,
        "data_dir": str(fresh_home.data_dir),
        "isolation": None,
        "process_limit": None,
        "users": None,
        "executor": None,
    }

    started = fresh_home.run("server", "start")
    assert started.returncode == 0, started.stderr
    record = fresh_home.record()
    assert started.stdout == (
        f"Local control plane running at {record['url']} (pid {record['pid']}).\n"
    )
    again = fresh_home.run("server", "start")
    assert (again.returncode, again.stdout) == (
        0,
        f"Already running at {record['url']} (pid {record['pid']}).\n",
    )
    other_port = fresh_home.run("server", "start", "--port", str(record["port"] + 1))
    assert other_port.returncode == 1
    assert f"already runs at {record['url']}" in other_port.stderr
    assert "--port" in other_port.stderr and "dumont server stop" in other_port.stderr
    assert "Traceback" not in other_port.stderr
    assert fresh_home.run("server", "status").returncode == 0

    status = fresh_home.run("server", "status", "--output", "json")
    assert json.loads(status.stdout) == {
        "running": True,
        "url": record["url"],
        "pid": record["pid"],
        "data_dir": str(fresh_home.data_dir),
        "isolation": "bwrap",
        "process_limit": "enforced",
        "users": "single",
        "executor": {"name": "local", "available": True, "reason": None},
    }

    stop = fresh_home.run("server", "stop")
    assert stop.returncode == 0, stop.stderr
    assert stop.stdout == f"Stopped the local control plane (pid {record['pid']}).\n"
    assert server_pids(fresh_home.data_dir) == []
    assert not (fresh_home.data_dir / "server.json").exists()
    assert fresh_home.run("server", "stop").stdout == "No local control plane was running.\n"
    final = fresh_home.run("server", "status", "-o", "json")
    assert (final.returncode, json.loads(final.stdout)["running"]) == (3, False)


@pytest.mark.slow
def test_a_stale_record_is_replaced(fresh_home: Home) -> None:
    # A record left by a crashed server whose pid now belongs to another process (this test):
    # it is neither trusted nor killed.
    fresh_home.data_dir.mkdir(parents=True)
    stale = {"pid": os.getpid(), "port": 9, "url": "http://127.0.0.1:9"}
    (fresh_home.data_dir / "server.json").write_text(json.dumps(stale))
    result = fresh_home.run("auth", "me")
    assert result.returncode == 0, result.stderr
    assert fresh_home.record()["pid"] != os.getpid()
    assert server_pids(fresh_home.data_dir) == [fresh_home.record()["pid"]]
    assert embedded.stop_server(fresh_home.data_dir) is not None
    (fresh_home.data_dir / "server.json").write_text(json.dumps(stale))
    assert embedded.stop_server(fresh_home.data_dir) is None  # not ours: left alone


@pytest.mark.slow
def test_foreground_server_is_recorded_and_shared(fresh_home: Home) -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "dumont_plan", "server", "start", "--foreground"],
        env=fresh_home.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stderr is not None
            banner = proc.stderr.readline()
            record = fresh_home.record()
            assert record["pid"] == proc.pid  # the CLI became the server (exec)
            assert banner == (
                f"Dumont local control plane at {record['url']} (data dir {fresh_home.data_dir};"
                " single-user; isolation: bwrap; executor: local)\n"
            )
            assert stat.S_IMODE((fresh_home.data_dir / "server.json").stat().st_mode) == 0o600

            again = fresh_home.run("server", "start", "--foreground")
            assert again.returncode == 1
            assert again.stderr == (
                f"Error: a local control plane already runs at {record['url']} (pid {proc.pid}); "
                "stop it first (`dumont server stop`)\n"
            )
            assert fresh_home.run("auth", "me").returncode == 0  # uses it: no second server
            assert server_pids(fresh_home.data_dir) == [proc.pid]

            stop = fresh_home.run("server", "stop")
            assert stop.stdout == f"Stopped the local control plane (pid {proc.pid}).\n"
            # uvicorn shuts down gracefully, then re-raises SIGTERM to exit with it.
            assert proc.wait(timeout=15) in (0, -signal.SIGTERM)
            assert not (fresh_home.data_dir / "server.json").exists()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def test_server_start_passes_the_limits_on(fresh_home: Home) -> None:
    started = fresh_home.run(
        "server", "start", "--max-running-jobs", "3", "--max-instances", "2",
        "--log-cap-bytes", "8192",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    argv = Path(f"/proc/{fresh_home.record()['pid']}/cmdline").read_bytes().split(b"\0")
    for flag, value in (
        (b"--max-running-jobs", b"3"),
        (b"--max-instances", b"2"),
        (b"--log-cap-bytes", b"8192"),
    ):
        assert argv[argv.index(flag) + 1] == value
    refused = fresh_home.run("server", "start", "--max-running-jobs", "0")
    assert refused.returncode == 1
    assert "'--max-running-jobs': Input should be greater than or equal to 1" in refused.stderr
