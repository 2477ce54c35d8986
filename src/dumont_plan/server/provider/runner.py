"""The job runner: one detached process per job, started by the control plane.

`python -m dumont_plan.server.provider.runner <job_dir> --token T --attempt N [--master-port P]`
runs the job described by `<job_dir>/spec.json` (no secrets in it: the Hugging Face token arrives
only as `HF_TOKEN` in this process's environment). It lives in its own session, so it outlives a
restart of the control plane, and it tells the control plane what happens only through
`<job_dir>/state.json`, written atomically:

    token, pid, pid_start, attempt, max_attempts, phase, step, started, attempt_started,
    child_pgid, child_pgids, ended, outcome, exit_code, error, result

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
retry would fill it again). A job of `num_nodes` > 1 runs that many ranks, each such a script
in a sandbox of its own, as one group (`ranks.py`: their layout, environment and outcome).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path, PurePosixPath
from typing import Any

from dumont_plan.server.provider import diskuse, isolation, ranks, workdirs
from dumont_plan.server.provider.job_secrets import CARRY_VAR, Carried, strip_credentials
from dumont_plan.server.provider.joblog import LogWriter
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
    def __init__(
        self, job_dir: Path, token: str, attempt: int, master_port: int | None = None
    ) -> None:
        self.dir = job_dir
        self.spec: dict[str, Any] = json.loads((job_dir / SPEC_FILE).read_text(encoding="utf-8"))
        self.sandbox = Sandbox(job_dir)
        self.ranks = ranks.count(self.spec)
        self.master_port = master_port or (ranks.free_port() if self.ranks > 1 else 0)
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
            "child_pgids": [],
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
        cap = int(self.spec.get("log_cap_bytes") or 0) or None
        self.logs = [
            LogWriter(job_dir / ranks.log_name(r), secrets, cap) for r in range(self.ranks)
        ]
        self.log = self.logs[0]
        self.cancelled = False
        self.child_pgids: list[int] = []
        self.group: ranks.RankGroup | None = None
        sandbox = self.spec.get("sandbox") or {}
        self.isolated = sandbox.get("isolation") == "bwrap"
        self.disks = [
            diskuse.DiskWatch.of(ranks.sandbox_of(job_dir, r).workspace, sandbox)
            for r in range(self.ranks)
        ]

    # -- state -------------------------------------------------------------------------------
    def save(self, **changes: Any) -> None:
        self.state.update(changes)
        write_json_atomic(self.dir / STATE_FILE, self.state)

    def on_term(self, signum: int, frame: object) -> None:
        self.cancelled = True
        for pgid in self.child_pgids:
            kill_group(pgid)

    def disk_error(self, force: bool = False) -> str | None:
        """Why a rank's workspace is over `disk_size` (checked at most every second)."""
        return next((e for d in self.disks if (e := d.error or d.exceeded(force))), None)

    # -- one attempt -------------------------------------------------------------------------
    def job_env(self, control_fd: int, sandbox: Sandbox | None = None) -> dict[str, str]:
        """The command's environment: an allowlist of the control plane's, plus the job's own."""
        job_id = str(self.spec["job_id"])
        sandbox = sandbox or self.sandbox
        if self.isolated:
            workspace, env_dir = isolation.WORKSPACE, isolation.ENV_MOUNT
            system_path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        else:
            workspace, env_dir = str(sandbox.workspace), str(sandbox.env_dir)
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

    def job_argv(self, script: Path, sandbox: Sandbox | None = None) -> list[str]:
        """How the attempt's script starts: in a sandbox of its own when isolation is on."""
        if not self.isolated:
            return ["bash", str(script)]
        sandbox = sandbox or self.sandbox
        settings = self.spec.get("sandbox") or {}
        limits = isolation.Limits(**(settings.get("limits") or {}))
        mounts = isolation.Mounts(
            workspace=sandbox.workspace,
            env_dir=sandbox.env_dir,
            script=script,
            hidden=tuple(Path(p) for p in settings.get("hidden") or []),
            shared=tuple(Path(p) for p in settings.get("shared") or []),
        )
        uid = int(settings.get("uid") or isolation.UID_BASE)
        return isolation.wrap_command(["bash", isolation.SCRIPT_MOUNT], mounts, limits, uid=uid)

    def prepare(self) -> None:
        """A fresh sandbox for each rank, the job's workdir unpacked in each."""
        for rank in range(self.ranks):
            sandbox = ranks.sandbox_of(self.dir, rank)
            sandbox.create()
            (sandbox.env_dir / "site").mkdir()
            (sandbox.env_dir / "hf-home").mkdir()
            python_wrappers(sandbox.env_dir / "bin", workload_python())
            workdirs.unpack_shipped(self.dir, sandbox.workspace, self.logs[rank].note)
            if self.isolated:
                isolation.write_git_config(sandbox.env_dir)
            if self.carried is not None:
                self.carried.write_askpass(sandbox.env_dir / "bin")

    def start_rank(self, rank: int) -> ranks.RankRun:
        """Start rank `rank`'s script in its sandbox, in a process group of its own."""
        sandbox = ranks.sandbox_of(self.dir, rank)
        script = ranks.script_of(self.dir, rank)
        workspace = PurePosixPath(isolation.WORKSPACE) if self.isolated else sandbox.workspace
        script.write_text(build_script(self.spec, workspace, self.carried), encoding="utf-8")
        control_r, control_w = os.pipe()
        env = self.job_env(control_w, sandbox)
        if self.ranks > 1:
            env.update(ranks.rank_env(rank, self.ranks, self.master_port))
        try:
            # No signal is blocked around the start (a blocked mask would be inherited by the
            # job): a SIGTERM before the group id is known is seen through `cancelled`.
            proc = subprocess.Popen(
                self.job_argv(script, sandbox),
                cwd=sandbox.workspace,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(control_w,),
                process_group=0,
            )
        except BaseException:
            os.close(control_r)
            raise
        finally:
            os.close(control_w)
        self.child_pgids.append(proc.pid)
        return ranks.RankRun(rank, proc, control_r, self.logs[rank])

    def on_step(self, run: ranks.RankRun) -> None:
        """A rank reported its step: the job runs once a rank runs its command."""
        runs = self.group.runs if self.group else [run]
        phase = "running" if any(r.step == "command" for r in runs) else "starting"
        self.save(phase=phase, step=runs[0].step)

    def run_attempt(self) -> tuple[str, int | None, str | None]:
        """Run the script once on every rank; return (outcome, exit code, error message)."""
        attempt = self.state["attempt"]
        now = time.time()
        self.save(
            phase="starting",
            step=None,
            attempt_started=now,
            started=self.state["started"] or now,
            child_pgid=None,
            child_pgids=[],
        )
        if self.max_attempts > 1:
            self.log.note(f"attempt {attempt} of {self.max_attempts}")
        self.prepare()
        deadline = now + float(self.spec.get("timeout_seconds", 480 * 60))
        if self.cancelled:
            return "cancelled", None, None
        self.child_pgids, self.group = [], None
        runs: list[ranks.RankRun] = []
        try:
            for rank in range(self.ranks):
                runs.append(self.start_rank(rank))
                if self.cancelled:
                    break
            self.group = ranks.RankGroup(runs, self.on_step, lambda: self.cancelled)
            if self.cancelled:
                self.group.kill_all()
            self.save(child_pgid=runs[0].proc.pid, child_pgids=self.group.pgids)
            outcome = self.group.pump(deadline, lambda: self.disk_error() is not None)
        finally:
            # Leftovers (background processes) die with the attempt.
            for run in runs:
                kill_group(run.proc.pid)
            kill_tagged(str(self.spec["job_id"]), exclude=os.getpid())
            codes = [run.proc.wait() for run in runs]
            for run in runs:
                if run.proc.stdout is not None:
                    run.proc.stdout.close()
                run.log.flush()
        self.child_pgids = []
        if self.cancelled:
            return "cancelled", None, None
        disk = self.disk_error(force=True)  # also what a quick job left
        if disk:
            return "failed", None, disk
        if outcome.timed_out:
            minutes = self.spec.get("timeout_minutes")
            return "timeout", None, f"Job exceeded its timeout of {minutes} minutes"
        failed = outcome.failed_rank
        if failed is None:
            failed = next((r for r, code in enumerate(codes) if code != 0), None)
        if failed is None:
            return "completed", 0, None
        run, code = runs[failed], codes[failed]
        step = run.step
        message = run.step_error or STEP_FAILURES.get(step or "source", "exit code {code}")
        message = workdirs.with_hint(
            message.format(code=code), step, code, self.dir, ranks.log_name(failed)
        )
        return "failed", code, f"rank {failed}: {message}" if self.ranks > 1 else message

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
                last = attempt >= self.max_attempts or self.cancelled or self.disk_error()
                if outcome != "failed" or last:
                    break
                for log in self.logs:
                    log.note(f"attempt {attempt} failed: {error}; retrying")
                self.save(attempt=attempt + 1)
        except Exception as exc:  # the runner's own failure still ends the job cleanly
            for pgid in self.child_pgids:
                kill_group(pgid)
            kill_tagged(str(self.spec["job_id"]), exclude=os.getpid())
            outcome, code, error = "failed", None, f"runner error: {type(exc).__name__}: {exc}"
        if self.cancelled:
            outcome, code, error = "cancelled", None, None
        self.save(
            phase="completing", ended=time.time(), outcome=outcome, exit_code=code, error=error
        )
        for log in self.logs:
            if outcome != "completed":
                log.note(f"job {outcome}" + (f": {error}" if error else ""))
        finalize(self.dir, self.spec, self.log.note)
        for log in self.logs:
            log.close()
        if not self.spec.get("save_logs", True):
            ranks.drop_logs(self.dir, self.spec)
        self.save(phase="finished", result=outcome)
        return 0


def finalize(job_dir: Path, spec: dict[str, Any] | None = None, note: Any = None) -> None:
    """Keep the outputs (rank 0's), then destroy the workspaces when the job asks for it (as
    `spec`, default its `spec.json`, says)."""
    spec = read_json(job_dir / SPEC_FILE) or {} if spec is None else spec
    sandbox = Sandbox(job_dir)
    try:
        sandbox.collect([str(p) for p in spec.get("output_paths") or []])
    except OSError as exc:
        if note is not None:
            note(f"could not keep outputs: {exc}")
    if spec.get("auto_destroy", True):
        sandbox.destroy()
        (job_dir / SCRIPT_FILE).unlink(missing_ok=True)
        ranks.finalize(job_dir, spec)


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
    parser.add_argument("--master-port", type=int, default=None)
    ns = parser.parse_args(args)
    return Runner(ns.job_dir.resolve(), ns.token, ns.attempt, ns.master_port).run()


if __name__ == "__main__":
    raise SystemExit(main())
