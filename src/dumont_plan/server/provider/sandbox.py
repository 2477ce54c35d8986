"""Sandboxes: one directory tree per workload on this machine, and the process helpers around it.

A sandbox stands in for a rented GPU machine. Its layout (`root` is
`<data_dir>/sandboxes/<kind>/<id>`):

```
root/
  workspace/   what the workload sees as `/workspace`; removed by `destroy()`
  env/         per-sandbox tools (pip --target dir, wrappers, HF home); removed by `destroy()`
  outputs/     files kept after destruction (`collect()` copies them here)
  ...          the owner's own files (state, logs), kept
```

Every process started for a sandbox carries `DUMONT_SANDBOX_ID=<id>` in its environment, so
`kill_tagged(id)` finds and ends all of them (also those that left the process group), and only
them. Liveness checks compare a pid with its recorded start time (Linux `/proc`), so a reused pid
is never mistaken for the original process.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from dumont_plan.files import write_atomic

TAG_VAR = "DUMONT_SANDBOX_ID"
WORKSPACE_MOUNT = PurePosixPath("/workspace")
PROC = Path("/proc")

# Names of the control plane's environment variables that never reach a workload.
SENSITIVE_ENV = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|APIKEY|CREDENTIAL|PRIVATE_KEY")


@dataclass(frozen=True)
class Sandbox:
    root: Path

    @property
    def workspace(self) -> Path:
        return self.root / "workspace"

    @property
    def env_dir(self) -> Path:
        return self.root / "env"

    @property
    def outputs(self) -> Path:
        return self.root / "outputs"

    def create(self) -> None:
        """Make an empty workspace and env dir (replacing old ones)."""
        self.destroy()
        self.workspace.mkdir(parents=True)
        self.env_dir.mkdir(parents=True)

    def destroy(self) -> None:
        """Remove the workspace and the env dir; outputs and the owner's files stay."""
        for path in (self.workspace, self.env_dir):
            if path.exists():
                shutil.rmtree(path, ignore_errors=True)

    def collect(self, paths: list[str]) -> list[str]:
        """Copy the regular files under `paths` into outputs/; return their relative paths."""
        copied: list[str] = []
        workspace = self.workspace.resolve() if self.workspace.exists() else None
        if workspace is None:
            return copied
        for raw in paths:
            source = map_workspace_path(workspace, raw)
            if source is None or source.is_symlink() or not source.exists():
                continue
            # A symlink in the middle (`lnk/etc/passwd`, lnk -> /) must not lead outside.
            if not source.resolve().is_relative_to(workspace):
                continue
            files = [source] if source.is_file() else sorted(regular_files(source))
            for file in files:
                relative = file.relative_to(workspace)
                target = self.outputs / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(file, target)
                copied.append(relative.as_posix())
        return copied

    def list_outputs(self) -> list[dict[str, Any]]:
        if not self.outputs.is_dir():
            return []
        return [
            {"path": f.relative_to(self.outputs).as_posix(), "size": f.stat().st_size}
            for f in sorted(regular_files(self.outputs))
        ]

    def output_file(self, relative: str) -> Path | None:
        """The kept output file at `relative`, or None (also for anything escaping outputs/)."""
        if not relative or relative.startswith("/") or "\\" in relative:
            return None
        parts = PurePosixPath(relative).parts
        if any(p in ("..", ".") for p in parts):
            return None
        path = self.outputs.joinpath(*parts)
        if path.is_symlink() or not path.is_file():
            return None
        if not path.resolve().is_relative_to(self.outputs.resolve()):
            return None
        return path


def map_workspace_path(workspace: Path, path: str) -> Path | None:
    """`/workspace/a/b` or `a/b` -> `<workspace>/a/b`; None for paths outside the workspace."""
    pure = PurePosixPath(path)
    if pure.is_absolute():
        try:
            pure = pure.relative_to(WORKSPACE_MOUNT)
        except ValueError:
            return None
    if any(part == ".." for part in pure.parts):
        return None
    return workspace.joinpath(*pure.parts) if pure.parts else workspace


def regular_files(folder: Path) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        base = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not (base / d).is_symlink()]
        for name in filenames:
            path = base / name
            if path.is_file() and not path.is_symlink():
                found.append(path)
    return found


def workload_env(tag: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without secrets, tagged with `tag`, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not SENSITIVE_ENV.search(k.upper())}
    env[TAG_VAR] = tag
    env.update(extra or {})
    return env


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON to `path` so that readers see either the old or the new content (0600)."""
    write_atomic(path, json.dumps(data, separators=(",", ":")), durable=False)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (index 0 = state), or None."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (clock ticks since boot), None when unknown or gone."""
    fields = _proc_stat(pid)
    return fields[19] if fields and len(fields) > 19 else None


def pid_alive(pid: int | None, start_time: str | None = None) -> bool:
    """Whether `pid` runs (zombies count as gone) and, when given, started at `start_time`."""
    if not pid or pid <= 1:
        return False
    if PROC.is_dir():
        fields = _proc_stat(pid)
        if fields is None or fields[0] in ("Z", "X"):
            return False
        return start_time is None or (len(fields) > 19 and fields[19] == start_time)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pid_namespace(pid: int | str) -> str | None:
    try:
        return os.readlink(PROC / str(pid) / "ns" / "pid")
    except OSError:
        return None


def tagged_pids(tag: str) -> list[int]:
    """Pids of the live processes of sandbox `tag` (Linux): those whose environment has
    `DUMONT_SANDBOX_ID=<tag>`, and every process of a PID namespace one of them lives in
    (other than ours): a sandboxed process that cleared its environment is found that way."""
    needle = f"{TAG_VAR}={tag}".encode()
    found: list[int] = []
    if not PROC.is_dir():
        return found
    me = os.getpid()
    others: list[int] = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle not in environ.split(b"\0"):
            others.append(int(entry.name))
        elif pid_alive(int(entry.name)):
            found.append(int(entry.name))
    namespaces = {_pid_namespace(pid) for pid in found} - {_pid_namespace("self"), None}
    if namespaces:
        found += [p for p in others if _pid_namespace(p) in namespaces and pid_alive(p)]
    return found


def kill_group(pgid: int | None) -> None:
    """SIGKILL a process group (never our own, never pid 0/1)."""
    if pgid and pgid > 1 and pgid != os.getpgrp():
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)


def kill_tagged(
    tag: str, fallback_pgids: tuple[int | None, ...] = (), exclude: int | None = None
) -> int:
    """SIGKILL every process of sandbox `tag`; return how many were signalled.

    Without /proc (not Linux) the `fallback_pgids` process groups are signalled instead (a
    recorded group id is not trusted otherwise: its processes may be gone and the id reused).
    """
    killed = 0
    if not PROC.is_dir():
        for pgid in fallback_pgids:
            kill_group(pgid)
            killed += 1
        return killed
    for pid in tagged_pids(tag):
        if pid != exclude:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
    return killed


SYSTEM_PYTHON = Path("/usr/bin/python3")


def workload_python() -> str:
    """The Python a job's `python` runs: the system's (`/usr/bin/python3`, as an image's would
    be), not the control plane's venv, whose packages are not the job's. The venv's only when
    the system has no Python of this version: `pip_packages` are installed (`pip --target`, by
    the control plane's pip) for this version."""
    real = Path(os.path.realpath(SYSTEM_PYTHON))
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    if real.name == version and real.is_file() and os.access(real, os.X_OK):
        return str(SYSTEM_PYTHON)
    return sys.executable


def python_wrappers(bin_dir: Path, interpreter: str | None = None) -> None:
    """`python` and `python3` in `bin_dir` that run `interpreter` (default: this one)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in ("python", "python3"):
        wrapper = bin_dir / name
        target = interpreter or sys.executable
        wrapper.write_text(f'#!/bin/sh\nexec "{target}" "$@"\n', encoding="utf-8")
        wrapper.chmod(0o755)
