"""Isolation of workloads: each job and instance runs under bubblewrap (`bwrap`).

What a sandboxed workload gets (`wrap_command`):

- its own PID namespace, with bwrap as its init: when the workload's main process ends, or
  bwrap is killed, or the process that started bwrap dies (`--die-with-parent`), the kernel
  kills every process left in the namespace, also those started with `setsid`, `env -i` or a
  double fork;
- its own mount namespace: its workspace at `/workspace` (read-write), its tools dir at
  `/dumont/env` (read-write), the system's `/usr` (and the `/bin`, `/lib*` links), a few
  world-readable files of `/etc` (name service, TLS certificates, no `/etc/shadow`), the Python
  installation that runs the control plane (read-only) and the directories the operator shares
  (read-only); the control plane's data dir, other sandboxes and other processes are not there;
- uid and gid 65534 in a user namespace of its own, a fresh session, and the network; when
  the control plane runs as root, a real unprivileged uid instead (`UID_BASE` + the user's id,
  set by `setpriv` inside the sandbox, every capability dropped; bwrap then makes the sandbox
  as root, without a user namespace): the kernel does not apply the process limit to root, nor
  so to a sandbox uid mapped onto root;
- resource limits set by `prlimit` (processes, data memory, open files, file size). The
  process limit counts every process of the uid: with a uid per user, all of that user's
  workloads together.

`probe()` says once per process whether bwrap works here (it needs unprivileged user
namespaces, so not macOS and not every container). Without it workloads run unisolated: the
single-user embedded server says so in its log and `/health`; a multi-user server refuses to
start (`server/__main__.py`).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import dumont_plan
from dumont_plan.server.settings import ServerSettings

WORKSPACE = "/workspace"
ENV_MOUNT = "/dumont/env"
SCRIPT_MOUNT = "/dumont/run.sh"
SANDBOX_UID = 65534
UID_BASE = 200000  # a root control plane runs user N's workloads as uid UID_BASE + N
MAX_LIMIT = 2**62  # a limit above this (or a disk_size of inf) counts as no limit
# World-readable system files a workload may need: name service, TLS, dynamic linker, time zone.
ETC_FILES = (
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/services",
    "/etc/protocols",
    "/etc/localtime",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/ca-certificates.conf",
    "/etc/pki",
    "/etc/alternatives",
    "/etc/mime.types",
    "/etc/os-release",
    "/etc/pip.conf",
)
# Top-level system dirs: a symlink on merged-/usr systems (kept as a link), else bound.
SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Variables of the control plane's environment that reach workloads (everything else stays out).
ALLOWED_ENV = (
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TERM",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_FIND_LINKS",
    "PIP_NO_INDEX",
    "PIP_TRUSTED_HOST",
    "HF_ENDPOINT",
    "HF_HUB_OFFLINE",
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
    "OMP_NUM_THREADS",
    "TOKENIZERS_PARALLELISM",
    "PYTORCH_CUDA_ALLOC_CONF",
)


@dataclass(frozen=True)
class Limits:
    """Resource limits of one workload (0: not limited)."""

    processes: int = 1024
    open_files: int = 4096
    data_bytes: int = 0
    file_bytes: int = 0

    def prlimit_args(self) -> list[str]:
        args = [f"--nofile={self.open_files}", f"--nproc={self.processes}"]
        if self.data_bytes:
            args.append(f"--data={self.data_bytes}")
        if self.file_bytes:
            args.append(f"--fsize={self.file_bytes}")
        return args


@dataclass(frozen=True)
class Mounts:
    """Where one workload's own directories are on the host."""

    workspace: Path
    env_dir: Path | None = None
    script: Path | None = None
    hidden: tuple[Path, ...] = ()
    shared: tuple[Path, ...] = field(default_factory=tuple)


def allowed_env() -> dict[str, str]:
    """The allowlisted part of this process's environment."""
    return {k: os.environ[k] for k in ALLOWED_ENV if os.environ.get(k)}


def _bwrap() -> str | None:
    return shutil.which("bwrap") if sys.platform.startswith("linux") else None


def _setpriv() -> str | None:
    return shutil.which("setpriv") if sys.platform.startswith("linux") else None


def drops_to_uid() -> bool:
    """Whether workloads run as a real unprivileged uid: the control plane runs as root and
    `setpriv` (util-linux) is there to switch to it."""
    return os.geteuid() == 0 and _setpriv() is not None


def workload_uid(user_id: int) -> int:
    """The uid a root control plane runs the workloads of user `user_id` as."""
    return UID_BASE + user_id


def write_git_config(env_dir: Path) -> None:
    """For a job run as a uid of its own: a git config in its env dir that accepts the repos it
    may read though root owns them (`safe.directory`; also read by the `upload-pack` of a local
    clone, unlike `git -c`) and includes its own `~/.gitconfig` (before `wrap_command`)."""
    if drops_to_uid():
        text = f"[safe]\n\tdirectory = *\n[include]\n\tpath = {WORKSPACE}/.gitconfig\n"
        (env_dir / "gitconfig").write_text(text, encoding="utf-8")


def git_env() -> dict[str, str]:
    """The variable naming the git config of `write_git_config` (when it writes one)."""
    return {"GIT_CONFIG_GLOBAL": f"{ENV_MOUNT}/gitconfig"} if drops_to_uid() else {}


def _drop_to(uid: int) -> list[str]:
    setpriv = _setpriv() or "setpriv"
    return [
        setpriv,
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
    ]


@functools.cache
def probe() -> str | None:
    """Why workloads cannot be isolated here, or None when bwrap works (checked once)."""
    path = _bwrap()
    if path is None:
        if not sys.platform.startswith("linux"):
            return f"bubblewrap needs Linux (this is {sys.platform})"
        return "bubblewrap (bwrap) is not installed; install it with: apt-get install bubblewrap"
    if drops_to_uid():
        test = [path, *_system_args(), "--", *_drop_to(UID_BASE), "/bin/sh", "-c", ":"]
    else:
        test = [path, *_system_args(), "--uid", str(SANDBOX_UID), "--", "/bin/sh", "-c", ":"]
    try:
        done = subprocess.run(test, capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap does not run: {exc}"
    if done.returncode != 0:
        first = (done.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[0]
        return f"bubblewrap cannot create a sandbox here (user namespaces disabled?): {first}"
    return None


def active() -> bool:
    return probe() is None


def name() -> str:
    """The isolation in use: `bwrap` or `none`."""
    return "bwrap" if active() else "none"


def process_limit_enforced(settings: ServerSettings) -> bool:
    """Whether the workloads' process limit holds: they are sandboxed and not run as root."""
    return isolation_of(settings) == "bwrap" and (os.geteuid() != 0 or drops_to_uid())


def _system_args(die_with_parent: bool = True) -> list[str]:
    if drops_to_uid():  # as root, without a user namespace (its only uid would be root)
        args = ["--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"]
    else:
        args = ["--unshare-all", "--share-net"]
    args.append("--new-session")
    if die_with_parent:
        args.append("--die-with-parent")
    args += ["--ro-bind", "/usr", "/usr"]
    for top in SYSTEM_DIRS:
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    args += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]
    return [*args, "--perms", "0755", "--dir", "/var", "--perms", "1777", "--dir", "/var/tmp"]


def _parents(dest: str, made: set[str], bound: list[str]) -> list[str]:
    """Arguments that make the missing parents of `dest` world-traversable (bwrap would make
    them with the control plane's umask 077: closed to a workload that is not root). `made`:
    the dirs made so far; `bound`: the host trees bound so far (their dirs exist)."""
    args: list[str] = []
    for parent in reversed(PurePosixPath(dest).parents[:-1]):
        text = str(parent)
        if text in made or any(parent.is_relative_to(b) for b in bound):
            continue
        made.add(text)
        args += ["--perms", "0755", "--dir", text]
    return args


def _hand_over(mounts: Mounts, uid: int) -> None:
    """Give the workload's own files to `uid` (never following a symlink it left there)."""
    for top in (mounts.workspace, mounts.env_dir):
        if top is None or not top.exists():
            continue
        os.chown(top, uid, uid, follow_symlinks=False)
        for folder, dirs, files in os.walk(top):
            for entry in (*dirs, *files):
                os.chown(os.path.join(folder, entry), uid, uid, follow_symlinks=False)
    if mounts.script is not None:
        os.chown(mounts.script, uid, uid, follow_symlinks=False)


def _world_readable(path: str) -> bool:
    try:
        return bool(os.stat(path).st_mode & 0o004)
    except OSError:
        return False


def python_paths() -> list[Path]:
    """The Python installation workloads share: interpreter prefix, venv, this package."""
    package_root = Path(dumont_plan.__file__).resolve().parents[1]
    found: list[Path] = []
    for raw in (sys.base_prefix, sys.prefix, str(package_root)):
        path = Path(raw).resolve()
        if not any(path == p or path.is_relative_to(p) for p in found):
            found.append(path)
    return found


def wrap_command(
    command: list[str],
    mounts: Mounts,
    limits: Limits,
    chdir: str = WORKSPACE,
    die_with_parent: bool = True,
    uid: int = UID_BASE,
) -> list[str]:
    """`command` run inside a fresh sandbox (as `uid` when the control plane runs as root:
    its workspace, env dir and script are handed over to it first).

    The workload's environment is the environment this argv is started with (never in the
    argv: anyone can read a command line). With `die_with_parent` (jobs) the sandbox ends when
    the process that started it does; without (instances, which outlive a restart of the
    control plane) it ends when bwrap is killed or its command ends.
    """
    bwrap = _bwrap()
    if bwrap is None:
        raise RuntimeError("bubblewrap is not available")
    args = [bwrap, *_system_args(die_with_parent)]
    made = {"/", "/tmp", "/var", "/var/tmp"}
    bound = ["/usr", "/proc", "/dev", *SYSTEM_DIRS]
    for item in ETC_FILES:
        if _world_readable(item):
            args += [*_parents(item, made, bound), "--ro-bind", item, item]
    ro_paths = [*python_paths(), *(p.resolve() for p in mounts.shared)]
    for path in ro_paths:
        args += [*_parents(str(path), made, bound), "--ro-bind", str(path), str(path)]
        bound.append(str(path))
    for hidden in mounts.hidden:
        resolved = hidden.resolve()
        if any(resolved.is_relative_to(p) for p in ro_paths):
            args += ["--tmpfs", str(resolved)]
    args += ["--bind", str(mounts.workspace), WORKSPACE]
    if mounts.env_dir is not None or mounts.script is not None:
        args += _parents(ENV_MOUNT, made, bound)
    if mounts.env_dir is not None:
        args += ["--bind", str(mounts.env_dir), ENV_MOUNT]
    if mounts.script is not None:
        args += ["--ro-bind", str(mounts.script), SCRIPT_MOUNT]
    if drops_to_uid():
        _hand_over(mounts, uid)
        args += ["--chdir", chdir, "--", *_drop_to(uid)]
    else:
        args += ["--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--chdir", chdir, "--"]
    prlimit = shutil.which("prlimit")
    prefix = [prlimit, *limits.prlimit_args(), "--"] if prlimit else []
    return [*prefix, *args, *command]


def _local_path(value: str) -> Path | None:
    """The host path a git URL or pip requirement names, when it names one that exists."""
    raw = value[len("file://") :] if value.startswith("file://") else value
    if not raw.startswith("/"):
        return None
    path = Path(raw)
    return path if path.exists() else None


def workload_sandbox(
    config: dict[str, Any], settings: ServerSettings, user_id: int
) -> dict[str, Any]:
    """How to sandbox one workload of user `user_id`: a job (its `spec.json["sandbox"]`) or
    an instance.

    Shared read-only: the operator's `shared` dirs and the local `PIP_FIND_LINKS` dirs; on a
    single-user server also the local paths the job names (a `file://` git URL, a wheel): its
    only user owns this machine's files anyway (but never a folder holding the data dir, such
    as `/`). On a multi-user server those are not visible.
    """
    paths = [p for p in settings.shared_dirs if p.exists()]
    for link in os.environ.get("PIP_FIND_LINKS", "").split():
        local = _local_path(link)
        if local is not None:
            paths.append(local)
    data = settings.data_dir.resolve()
    if not settings.multi_user:
        named = [str(config.get("git_url") or ""), *(config.get("pip_packages") or [])]
        found = [p.resolve() for p in map(_local_path, named) if p is not None]
        paths += [p for p in found if not data.is_relative_to(p)]  # never `/` or the home
    visible = {str(p.resolve()) for p in paths if not p.resolve().is_relative_to(data)}
    disk = float(config.get("disk_size") or 0) * settings.disk_gb_bytes
    disk_bytes = int(disk) if math.isfinite(disk) and 0 < disk < MAX_LIMIT else 0
    return {
        "isolation": isolation_of(settings),
        "hidden": [str(data)],
        "shared": sorted(visible),
        "limits": {**asdict(limits_of(settings)), "file_bytes": disk_bytes},
        "disk_bytes": disk_bytes,  # the workspace's total (runner.py, diskuse.py)
        "disk_gb_bytes": settings.disk_gb_bytes,
        "uid": workload_uid(user_id),
    }


def isolation_of(settings: ServerSettings) -> str:
    """The isolation workloads of this server get: `bwrap` or `none`."""
    return "none" if settings.isolation == "none" else name()


def limits_of(settings: ServerSettings) -> Limits:
    memory = settings.workload_memory_bytes
    if not memory:
        with contextlib.suppress(ValueError, OSError, AttributeError):
            memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return Limits(
        processes=settings.workload_processes,
        open_files=settings.workload_open_files,
        data_bytes=max(0, int(memory)),
    )
