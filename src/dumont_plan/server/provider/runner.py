"""The job runner: one detached process per job, started by the control plane.

`python -m dumont_plan.server.provider.runner <job_dir> --token T --attempt N` runs the job
described by `<job_dir>/spec.json` (no secrets in it: the Hugging Face token arrives only as
`HF_TOKEN` in this process's environment). It lives in its own session, so it outlives a restart
of the control plane, and it tells the control plane what happens only through
`<job_dir>/state.json`, written atomically:

    token, pid, pid_start, attempt, max_attempts, phase, step, started, attempt_started,
    child_pgid, ended, outcome, exit_code, error, result

`phase` goes provisioning -> starting (source, pip, setup) -> running (command) -> completing
(outputs kept, sandbox destroyed) -> finished; `result` (completed|failed|timeout|cancelled) is
set last, once the outputs are in place. Each attempt is one bash script in a fresh workspace,
in its own process group: `set -e`, the source step (`git clone`, or a Hugging Face download by
`runner hf-download`), `pip install --target` of `pip_packages`, `setup_script`, then `command`
in `repo/`, `model/` or the workspace. The script reports its step on a private pipe that is
closed before the command runs. Output streams to `<job_dir>/job.log` line by line, with every
secret value replaced by `***`. The job's other secrets (`job_secrets.Carried`) arrive in one
environment variable, popped at start: a command or setup script holding a value runs as
`eval "$DUMONT_JOB_COMMAND"` so that `run.sh` holds none (so does a line that another field
holding a value changes), and git credentials go through GIT_ASKPASS. A failed attempt is
retried up to `max_retries` times; the attempt's deadline (`timeout_seconds`) ends it with
`timeout`; SIGTERM (the control plane's cancel) ends it with `cancelled`; a workspace grown
past `disk_size` (`diskuse.DiskWatch`, at most every second) ends it `failed`, not retried (a
retry would fill it again).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import selectors
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path, PurePosixPath
from typing import Any

from dumont_plan.server.provider import diskuse, isolation, workdirs
from dumont_plan.server.provider.job_secrets import CARRY_VAR, Carried, strip_credentials
from dumont_plan.server.provider.joblog import CappedLog
from dumont_plan.server.provider.sandbox import (
    TAG_VAR,
    Sandbox,
    kill_group,
    kill_tagged,
    process_start_time,
    python_wrappers,
    read_json,
    workload_python,
    write_json_atomic,
)

SPEC_FILE = "spec.json"
STATE_FILE = "state.json"
LOG_FILE = "job.log"
SCRIPT_FILE = "run.sh"
MASK = b"***"
# After the script's main process exits, how long its output may still flow before leftovers die.
DRAIN_SECONDS = 0.5


class LogWriter:
    """Appends output to the job log as it arrives, whole lines at a time, secrets masked;
    past `cap` bytes the log keeps its head and its last part (`joblog.CappedLog`)."""

    def __init__(self, path: Path, secrets: list[str], cap: int | None = None) -> None:
        self.path = path
        self.secrets = sorted({s.encode() for s in secrets if len(s) >= 3}, key=len, reverse=True)
        self.keep = max((len(s) for s in self.secrets), default=1) - 1
        self.pending = b""
        self.handle = CappedLog(path, cap)

    def mask(self, data: bytes) -> bytes:
        for secret in self.secrets:
            data = data.replace(secret, MASK)
        return data

    def feed(self, data: bytes) -> None:
        self.pending += data
        cut = self.pending.rfind(b"\n") + 1
        if cut == 0 and len(self.pending) > 65536:
            cut = len(self.pending) - self.keep
        if cut > 0:
            chunk, self.pending = self.pending[:cut], self.pending[cut:]
            self.handle.write(self.mask(chunk))

    def flush(self) -> None:
        if self.pending:
            self.handle.write(self.mask(self.pending))
            self.pending = b""

    def note(self, message: str) -> None:
        self.flush()
        self.handle.write(self.mask(f"[dumont] {message}\n".encode()))

    def close(self) -> None:
        self.flush()
        self.handle.close()


def build_script(
    spec: dict[str, Any], workspace: PurePosixPath | Path, carried: Carried | None = None
) -> str:
    """The bash script of one attempt (no secret in it: `carried`'s are in its environment)."""
    carried = carried or Carried()
    real = script_lines({**spec, **carried.fields}, workspace, carried)
    return "\n".join(carried.hide_lines(script_lines(spec, workspace, carried), real)) + "\n"


def script_lines(
    spec: dict[str, Any], workspace: PurePosixPath | Path, carried: Carried
) -> list[str]:
    q = shlex.quote
    source = spec.get("source", "command")
    site_install = '"$DUMONT_PYTHON" -m pip install --target "$DUMONT_SITE" --upgrade'
    lines = [
        "set -e",
        'step() { echo "step $1" >&"$DUMONT_CONTROL_FD"; }',
        f"cd {q(str(workspace))}",
        "step source",
    ]
    workdir = workspace
    if source == "git":
        branch = f"-b {q(spec['git_branch'])} " if spec.get("git_branch") else ""
        lines += carried.clone_lines(f"{branch}-- {q(spec['git_url'])} repo")
        workdir = workspace / "repo"
    elif source == "huggingface":
        revision = spec.get("hf_revision") or "main"
        lines.append(
            '"$DUMONT_PYTHON" -m dumont_plan.server.provider.runner hf-download '
            f"{q(spec['hf_repo'])} {q(revision)} model"
        )
        workdir = workspace / "model"
    if source in ("git", "huggingface"):
        req = q(f"{workdir.name}/requirements.txt")
        lines.append(f"if [ -f {req} ]; then {site_install} -r {req}; fi")
    lines.append("step pip")
    packages = [str(p) for p in spec.get("pip_packages") or []]
    if packages:
        lines.append(f"{site_install} {' '.join(q(p) for p in packages)}")
    lines.append("step setup")
    if spec.get("setup_script"):
        lines.append(carried.script_line("setup_script", str(spec["setup_script"])))
    lines += [
        f"cd {q(str(workdir))}",
        "step command",
        'eval "exec $DUMONT_CONTROL_FD>&-"',
        carried.script_line("command", str(spec.get("command") or "") or ":"),
    ]
    return lines


STEP_FAILURES = {
    "source": "source step failed (exit code {code})",
    "pip": "pip install of pip_packages failed (exit code {code})",
    "setup": "setup_script failed (exit code {code})",
    "command": "command exited with code {code}",
}


class Runner:
    def __init__(self, job_dir: Path, token: str, attempt: int) -> None:
        self.dir = job_dir
        self.spec: dict[str, Any] = json.loads((job_dir / SPEC_FILE).read_text(encoding="utf-8"))
        self.sandbox = Sandbox(job_dir)
        self.max_attempts = int(self.spec.get("max_retries", 0)) + 1
        previous = read_json(job_dir / STATE_FILE) or {}
        self.state: dict[str, Any] = {
            "token": token,
            "pid": os.getpid(),
            "pid_start": process_start_time(os.getpid()),
            "attempt": attempt,
            "max_attempts": self.max_attempts,
            "phase": "provisioning",
            "step": None,
            "started": previous.get("started"),
            "attempt_started": None,
            "child_pgid": None,
            "ended": None,
            "outcome": None,
            "exit_code": None,
            "error": None,
            "result": None,
        }
        self.hf_token = os.environ.get("HF_TOKEN") or None
        self.carried = Carried.from_env(os.environ)
        os.environ.pop(CARRY_VAR, None)  # reaches no child as such
        old_password = strip_credentials(str(self.spec.get("git_url") or ""))[2]  # old specs
        secrets = [s for s in (self.hf_token, old_password) if s]
        secrets += self.carried.values() if self.carried else []
        cap = self.spec.get("log_cap_bytes")
        self.log = LogWriter(job_dir / LOG_FILE, secrets, int(cap) if cap else None)
        self.cancelled = False
        self.child_pgid: int | None = None
        sandbox = self.spec.get("sandbox") or {}
        self.isolated = sandbox.get("isolation") == "bwrap"
        self.disk = diskuse.DiskWatch.of(self.sandbox.workspace, sandbox)

    # -- state -------------------------------------------------------------------------------
    def save(self, **changes: Any) -> None:
        self.state.update(changes)
        write_json_atomic(self.dir / STATE_FILE, self.state)

    def on_term(self, signum: int, frame: object) -> None:
        self.cancelled = True
        kill_group(self.child_pgid)

    # -- one attempt -------------------------------------------------------------------------
    def job_env(self, control_fd: int) -> dict[str, str]:
        """The command's environment: an allowlist of the control plane's, plus the job's own."""
        job_id = str(self.spec["job_id"])
        if self.isolated:
            workspace, env_dir = isolation.WORKSPACE, isolation.ENV_MOUNT
            system_path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        else:
            workspace, env_dir = str(self.sandbox.workspace), str(self.sandbox.env_dir)
            system_path = os.environ.get("PATH", "/usr/bin:/bin")
        site = f"{env_dir}/site"
        env = isolation.allowed_env()
        env.update(
            {
                TAG_VAR: job_id,
                "DUMONT_JOB_ID": job_id,
                "DUMONT_WORKSPACE": workspace,
                "DUMONT_PYTHON": sys.executable,
                "DUMONT_SITE": site,
                "DUMONT_CONTROL_FD": str(control_fd),
                "HOME": workspace,
                "PATH": f"{env_dir}/bin{os.pathsep}{system_path}",
                "PYTHONPATH": site,
                "PYTHONUNBUFFERED": "1",
                "HF_HOME": f"{env_dir}/hf-home",
                "HF_HUB_DISABLE_TELEMETRY": "1",
                "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                "PIP_NO_INPUT": "1",
                "GIT_TERMINAL_PROMPT": "0",
            }
        )
        if self.isolated:
            env.update(isolation.git_env())
        if self.hf_token:
            env["HF_TOKEN"] = self.hf_token
        if self.carried is not None:
            env.update(self.carried.workload_env(f"{env_dir}/bin"))
        return env

    def job_argv(self, script: Path) -> list[str]:
        """How the attempt's script starts: in a sandbox of its own when isolation is on."""
        if not self.isolated:
            return ["bash", str(script)]
        settings = self.spec.get("sandbox") or {}
        limits = isolation.Limits(**(settings.get("limits") or {}))
        mounts = isolation.Mounts(
            workspace=self.sandbox.workspace,
            env_dir=self.sandbox.env_dir,
            script=script,
            hidden=tuple(Path(p) for p in settings.get("hidden") or []),
            shared=tuple(Path(p) for p in settings.get("shared") or []),
        )
        uid = int(settings.get("uid") or isolation.UID_BASE)
        return isolation.wrap_command(["bash", isolation.SCRIPT_MOUNT], mounts, limits, uid=uid)

    def prepare(self) -> None:
        self.sandbox.create()
        (self.sandbox.env_dir / "site").mkdir()
        (self.sandbox.env_dir / "hf-home").mkdir()
        python_wrappers(self.sandbox.env_dir / "bin", workload_python())
        workdirs.unpack_shipped(self.dir, self.sandbox.workspace, self.log.note)
        if self.isolated:
            isolation.write_git_config(self.sandbox.env_dir)
        if self.carried is not None:
            self.carried.write_askpass(self.sandbox.env_dir / "bin")

    def run_attempt(self) -> tuple[str, int | None, str | None]:
        """Run the script once; return (outcome, exit code, error message)."""
        attempt = self.state["attempt"]
        now = time.time()
        self.save(
            phase="starting",
            step=None,
            attempt_started=now,
            started=self.state["started"] or now,
            child_pgid=None,
        )
        if self.max_attempts > 1:
            self.log.note(f"attempt {attempt} of {self.max_attempts}")
        self.prepare()
        script = self.dir / SCRIPT_FILE
        workspace = PurePosixPath(isolation.WORKSPACE) if self.isolated else self.sandbox.workspace
        script.write_text(build_script(self.spec, workspace, self.carried), encoding="utf-8")
        deadline = now + float(self.spec.get("timeout_seconds", 480 * 60))
        control_r, control_w = os.pipe()
        if self.cancelled:
            os.close(control_r)
            os.close(control_w)
            return "cancelled", None, None
        # No signal is blocked around the start (a blocked mask would be inherited by the job):
        # a SIGTERM that arrives before `child_pgid` is set is seen through `cancelled` below.
        proc = subprocess.Popen(
            self.job_argv(script),
            cwd=self.sandbox.workspace,
            env=self.job_env(control_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=(control_w,),
            process_group=0,
        )
        self.child_pgid = proc.pid
        if self.cancelled:
            kill_group(proc.pid)
        os.close(control_w)
        self.save(child_pgid=proc.pid)
        step, step_error, timed_out = self.pump(proc, control_r, deadline)
        self.child_pgid = None
        # Leftovers (background processes) die with the attempt; the group id is still ours
        # because the script's main process is not reaped yet.
        kill_group(proc.pid)
        kill_tagged(str(self.spec["job_id"]), exclude=os.getpid())
        code = proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        self.log.flush()
        if self.cancelled:
            return "cancelled", None, None
        if self.disk.error or self.disk.exceeded(force=True):  # also what a quick job left
            return "failed", None, self.disk.error
        if timed_out:
            minutes = self.spec.get("timeout_minutes")
            return "timeout", None, f"Job exceeded its timeout of {minutes} minutes"
        if code == 0:
            return "completed", 0, None
        message = step_error or STEP_FAILURES.get(step or "source", "exit code {code}")
        return "failed", code, workdirs.with_hint(message.format(code=code), step, code, self.dir)

    def pump(
        self, proc: subprocess.Popen[bytes], control_fd: int, deadline: float
    ) -> tuple[str | None, str | None, bool]:
        """Relay output to the log and step markers to the state until the script ends."""
        if proc.stdout is None:
            raise RuntimeError("the job script was started without a stdout pipe")
        out_fd = proc.stdout.fileno()
        selector = selectors.DefaultSelector()
        selector.register(out_fd, selectors.EVENT_READ)
        selector.register(control_fd, selectors.EVENT_READ)
        open_fds = {out_fd, control_fd}
        control_buffer = b""
        step: str | None = None
        step_error: str | None = None
        exited_at: float | None = None
        timed_out = False
        try:
            while out_fd in open_fds:
                now = time.time()
                if now >= deadline or self.disk.exceeded():
                    timed_out = not self.disk.error
                    break
                if exited_at is None and proc.poll() is not None:
                    exited_at = now
                if exited_at is not None and now - exited_at > DRAIN_SECONDS:
                    break  # background leftovers keep stdout open: they die below
                for key, _ in selector.select(min(0.2, max(0.0, deadline - now))):
                    fd = int(key.fd)
                    data = os.read(fd, 65536)
                    if not data:
                        selector.unregister(fd)
                        open_fds.discard(fd)
                    elif fd == out_fd:
                        self.log.feed(data)
                    else:
                        control_buffer += data
                        *lines, control_buffer = control_buffer.split(b"\n")
                        for line in lines:
                            kind, _, value = line.decode(errors="replace").partition(" ")
                            if kind == "step":
                                step = value
                                phase = "running" if value == "command" else "starting"
                                self.save(phase=phase, step=value)
                            elif kind == "error":
                                step_error = value
        finally:
            selector.close()
            os.close(control_fd)
        if timed_out or self.disk.error:
            kill_group(proc.pid)
        # Whatever is still buffered in the pipe after the kill.
        with contextlib.suppress(OSError):
            os.set_blocking(out_fd, False)
            while chunk := os.read(out_fd, 65536):
                self.log.feed(chunk)
        return step, step_error, timed_out

    # -- whole job ---------------------------------------------------------------------------
    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.on_term)
        self.save()
        outcome: str = "failed"
        code: int | None = None
        error: str | None = "runner did not start"
        try:
            while True:
                outcome, code, error = self.run_attempt()
                attempt = self.state["attempt"]
                last = attempt >= self.max_attempts or self.cancelled or self.disk.error
                if outcome != "failed" or last:
                    break
                self.log.note(f"attempt {attempt} failed: {error}; retrying")
                self.save(attempt=attempt + 1)
        except Exception as exc:  # the runner's own failure still ends the job cleanly
            kill_group(self.child_pgid)
            kill_tagged(str(self.spec["job_id"]), exclude=os.getpid())
            outcome, code, error = "failed", None, f"runner error: {type(exc).__name__}: {exc}"
        if self.cancelled:
            outcome, code, error = "cancelled", None, None
        self.save(
            phase="completing", ended=time.time(), outcome=outcome, exit_code=code, error=error
        )
        if outcome != "completed":
            self.log.note(f"job {outcome}" + (f": {error}" if error else ""))
        finalize(self.dir, self.spec, self.log.note)
        self.log.close()
        if not self.spec.get("save_logs", True):
            (self.dir / LOG_FILE).unlink(missing_ok=True)
        self.save(phase="finished", result=outcome)
        return 0


def finalize(job_dir: Path, spec: dict[str, Any], note: Any = None) -> None:
    """Keep the outputs, then destroy the workspace when the job asks for it."""
    sandbox = Sandbox(job_dir)
    try:
        sandbox.collect([str(p) for p in spec.get("output_paths") or []])
    except OSError as exc:
        if note is not None:
            note(f"could not keep outputs: {exc}")
    if spec.get("auto_destroy", True):
        sandbox.destroy()
        (job_dir / SCRIPT_FILE).unlink(missing_ok=True)


def hf_download(repo: str, revision: str, dest: str) -> int:
    """`runner hf-download REPO REVISION DEST`: snapshot a Hugging Face repo into DEST."""
    token = os.environ.get("HF_TOKEN") or None
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return report_error(
            "huggingface_hub is not installed on the control plane; "
            "install it with: pip install 'dumont-plan[hf]'"
        )
    print(f"[dumont] downloading {repo}@{revision} from Hugging Face", flush=True)
    try:
        snapshot_download(repo_id=repo, revision=revision, local_dir=dest, token=token or False)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        message = f"Hugging Face download of {repo}@{revision} failed: {type(exc).__name__}"
        if first:
            message += f": {first}"
        if token:
            message = message.replace(token, "***")
        return report_error(message)
    return 0


def report_error(message: str) -> int:
    """Say why a step failed: in the log, and to the runner's control pipe when there is one."""
    print(f"[dumont] {message}", file=sys.stderr, flush=True)
    fd = os.environ.get("DUMONT_CONTROL_FD")
    if fd and fd.isdigit():
        with contextlib.suppress(OSError):
            os.write(int(fd), f"error {message}\n".encode())
    return 3


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["hf-download"]:
        if len(args) != 4:
            print("usage: runner hf-download REPO REVISION DEST", file=sys.stderr)
            return 2
        return hf_download(args[1], args[2], args[3])
    os.umask(0o077)
    parser = argparse.ArgumentParser(prog="python -m dumont_plan.server.provider.runner")
    parser.add_argument("job_dir", type=Path)
    parser.add_argument("--token", required=True)
    parser.add_argument("--attempt", type=int, default=1)
    ns = parser.parse_args(args)
    return Runner(ns.job_dir.resolve(), ns.token, ns.attempt).run()


if __name__ == "__main__":
    raise SystemExit(main())
