"""An instance's processes: its `onstart_cmd` in a session of its own, and the signals around it.

The command runs under bubblewrap when isolation is on (`isolation.py`): a PID namespace of
its own, so killing bwrap's group (the leader's) ends every process of the instance, also those
started with `setsid`, `env -i` or a double fork. A process group leader is identified by (pid,
kernel start time), so a pid reused after a restart of the control plane is never signalled.
Every process also carries the sandbox tag `instance-<id>[@<server>]` in its environment, which
finds those that left the group (SIGTERM and SIGSTOP reach them through it). Children of this
control plane process are kept to be reaped (no zombies).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dumont_plan.server.provider import isolation
from dumont_plan.server.provider.sandbox import (
    TAG_VAR,
    Sandbox,
    kill_tagged,
    pid_alive,
    process_start_time,
    tagged_pids,
)

STOP_GRACE_SECONDS = 3.0  # pause: time for SIGTERM before SIGKILL
SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_children: dict[int, subprocess.Popen[bytes]] = {}
_children_guard = threading.Lock()


# A served control plane scopes its tags with a digest of its data dir (`set_scope`): every
# server counts instance ids from 30000000, and a tag found machine-wide must not make one
# server stop, freeze or thaw another's processes. In-process apps (tests) keep bare tags.
_scope = ""


def scope_of(data_dir: Path) -> str:
    """The tag scope of the control plane serving `data_dir`."""
    return hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]


def set_scope(data_dir: Path) -> None:
    global _scope
    _scope = scope_of(data_dir)


def tag_of(instance_id: int) -> str:
    return f"instance-{instance_id}@{_scope}" if _scope else f"instance-{instance_id}"


@dataclass(frozen=True)
class Leader:
    """The recorded leader of an instance's processes (pid None: never started)."""

    instance_id: int
    pid: int | None
    start_time: str | None

    def alive(self) -> bool:
        return bool(self.pid) and pid_alive(self.pid, self.start_time)

    def any_alive(self) -> bool:
        return self.alive() or bool(tagged_pids(tag_of(self.instance_id)))


def command_in(
    instance_id: int,
    sandbox: Sandbox,
    command: str,
    policy: dict[str, Any],
    *,
    die_with_parent: bool,
) -> tuple[list[str], dict[str, str]]:
    """The argv and environment of `bash -c command` in the instance: its sandbox (bwrap when
    `policy["isolation"] == "bwrap"`), uid, limits and tag. The leader (`start`) outlives a
    restart of the control plane; a one-off command (`instance exec`) dies with its parent."""
    isolated = policy.get("isolation") == "bwrap"
    workspace = isolation.WORKSPACE if isolated else str(sandbox.workspace)
    env = isolation.allowed_env()
    env.update(
        {
            TAG_VAR: tag_of(instance_id),
            "DUMONT_INSTANCE_ID": str(instance_id),
            "WORKSPACE": workspace,
            "HOME": workspace,
            "PATH": SANDBOX_PATH if isolated else os.environ.get("PATH", SANDBOX_PATH),
        }
    )
    env.update(policy.get("env") or {})
    argv = ["bash", "-c", command]
    if isolated:
        mounts = isolation.Mounts(
            workspace=sandbox.workspace,
            hidden=tuple(Path(p) for p in policy.get("hidden") or []),
            shared=tuple(Path(p) for p in policy.get("shared") or []),
        )
        limits = isolation.Limits(**(policy.get("limits") or {}))
        uid = int(policy.get("uid") or isolation.UID_BASE)
        argv = isolation.wrap_command(
            argv, mounts, limits, die_with_parent=die_with_parent, uid=uid
        )
    return argv, env


def start(
    instance_id: int, sandbox: Sandbox, command: str, policy: dict[str, Any] | None = None
) -> Leader | None:
    """Run `bash -c command` in the workspace, output appended to `onstart.log`.

    With `policy["isolation"] == "bwrap"` (`isolation.workload_sandbox`) the command runs in a
    sandbox of its own: bwrap is the leader, and killing its group ends every process inside.
    """
    sandbox.workspace.mkdir(parents=True, exist_ok=True)
    argv, env = command_in(instance_id, sandbox, command, policy or {}, die_with_parent=False)
    with open(sandbox.root / "onstart.log", "ab") as log:
        try:
            proc = subprocess.Popen(
                argv,
                cwd=sandbox.workspace,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
        except OSError as exc:
            log.write(f"cannot start onstart_cmd: {exc}\n".encode())
            return None
    with _children_guard:
        _children[instance_id] = proc
    return Leader(instance_id, proc.pid, process_start_time(proc.pid))


def _signal_all(leader: Leader, sig: int) -> None:
    if leader.pid and leader.alive():
        with contextlib.suppress(OSError):
            os.killpg(leader.pid, sig)
    for pid in tagged_pids(tag_of(leader.instance_id)):
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


def reap(instance_id: int, wait: float = 0.0) -> None:
    with _children_guard:
        proc = _children.get(instance_id)
    if proc is None:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=wait) if wait > 0 else proc.poll()
    if proc.returncode is not None:
        with _children_guard:
            _children.pop(instance_id, None)


def reap_all() -> None:
    with _children_guard:
        ids = list(_children)
    for instance_id in ids:
        reap(instance_id)


def stop(leader: Leader, grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM the processes (and SIGCONT frozen ones), SIGKILL what remains after `grace`."""
    _signal_all(leader, signal.SIGTERM)
    _signal_all(leader, signal.SIGCONT)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        reap(leader.instance_id)
        if not leader.any_alive():
            break
        time.sleep(0.02)
    kill_tagged(tag_of(leader.instance_id), (leader.pid if leader.alive() else None,))
    reap(leader.instance_id, wait=1.0)


def freeze(leader: Leader) -> bool:
    """SIGSTOP the processes; False when nothing is alive to freeze."""
    if not leader.any_alive():
        return False
    _signal_all(leader, signal.SIGSTOP)
    return True


def thaw(leader: Leader) -> bool:
    """SIGCONT frozen processes; False when nothing is alive any more."""
    if not leader.any_alive():
        return False
    _signal_all(leader, signal.SIGCONT)
    return True
