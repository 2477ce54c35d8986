"""Helpers for the apply and invariant tests: a spec folder, the CLI in it, events, live counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

from dumont_plan.client import DumontClient
from tests.support import cli_env, run_cli

EVENT_TYPES = {
    "apply_start",
    "change_start",
    "wait_progress",
    "log",
    "change_done",
    "change_failed",
    "change_skipped",
    "apply_done",
}


class Project:
    """A folder holding one spec (`dumont.yaml`) and its `.dumont/`, and the CLI run in it."""

    def __init__(self, folder: Path, home: Path, url: str, token: str, **env: str) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.env = cli_env(home, url, token)
        self.env.update(env)

    def write(self, text: str, name: str = "dumont.yaml") -> Path:
        path = self.folder / name
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    def __call__(
        self, *args: str, code: int | None = 0, timeout: float = 120, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = run_cli(list(args), self.env, cwd=self.folder, timeout=timeout, input=input)
        assert "Traceback" not in result.stderr, result.stderr
        if code is not None:
            assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
        return result

    def popen(self, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "dumont_plan", *args],
            env={**self.env, **(extra_env or {})},
            cwd=self.folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def state(self, beside: str = ".") -> dict[str, Any]:
        """The state file beside the spec (`beside`: the spec's folder, relative)."""
        path = self.folder / beside / ".dumont" / "state.json"
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    def remote_id(self, address: str) -> str:
        return str(self.state()["resources"][address]["remote_id"])


def parse_events(stdout: str) -> list[dict[str, Any]]:
    """Every stdout line as one JSON event (fails on anything else)."""
    events = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    for event in events:
        assert event["type"] in EVENT_TYPES, event
        assert isinstance(event["timestamp"], float | int), event
    return events


def live_names(client: DumontClient) -> tuple[Counter[str], Counter[str]]:
    """(jobs by name, instances by label) of the client's user, every status."""
    jobs = Counter(str(j.name) for j in client.jobs.list_all())
    instances = Counter(str(i.label) for i in client.instances.list_all())
    return jobs, instances


def wait_until(predicate: Any, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def tree_text(folder: Path) -> str:
    """Every readable file under `folder`, as text (bytes decoded loosely), concatenated."""
    chunks = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            try:
                chunks.append(path.read_bytes().decode("utf-8", "replace"))
            except OSError:
                continue
    return "\n".join(chunks)


def processes_mentioning(text: str) -> list[int]:
    """Pids of this user's processes whose command line or environment mentions `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        for name in ("cmdline", "environ"):
            try:
                if text.encode() in (entry / name).read_bytes():
                    found.append(int(entry.name))
                    break
            except OSError:
                continue
    return found
