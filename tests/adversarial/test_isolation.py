"""Issue 10, as an attacker would try it: two real users A and B against the real server over
loopback. B's job must not reach the control plane's files, A's job, A's processes or the host;
what a job starts must end with it; the embedded server is single-user and private.

Each test here failed on the code before workloads ran under bubblewrap.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from dumont_plan.cli.embedded import local_credentials, stop_server
from dumont_plan.client import DumontClient
from dumont_plan.server.provider.isolation import UID_BASE
from dumont_plan.server.provider.sandbox import tagged_pids
from tests.server.instancefixtures import INSTANCES, actual, create, reliable_offer, workspace
from tests.server.instancefixtures import wait_for as wait_for_instance
from tests.server.jobfixtures import (
    GATE,
    create_job,
    get_job,
    job_dir,
    logs,
    open_gate,
    private_server,
    runner_state,
    wait_for,
    wait_until,
)
from tests.support import PASSWORD, LocalServer, UserSession, cli_env, new_user, run_cli

LEAK = "LEAKED"


def run_job(user: UserSession, command: str, **fields: object) -> str:
    """Run `command` as a job of `user` to its end; its log."""
    job = create_job(user, command=command, **fields)
    wait_for(user, job["id"], {"completed", "failed"})
    return logs(user, job["id"])


def try_read(path: str) -> str:
    """Shell that prints LEAKED and the file's first bytes when it can read `path`."""
    return f'if head -c 64 "{path}" >/dev/null 2>&1; then echo "{LEAK} {path}"; fi'


def running_job_of(user: UserSession, **fields: object) -> dict[str, object]:
    job = create_job(user, command=f"echo a-started; {GATE}; echo a-done", **fields)
    wait_for(user, job["id"], "running")
    return job


def test_a_job_cannot_read_the_control_planes_secret_or_database(
    server: LocalServer, user: UserSession
) -> None:
    data = server.data_dir
    paths = [data / "jwt-secret", data / "dumont.sqlite3", data / "dumont.sqlite3-wal"]
    relative = ["../../../../jwt-secret", "../../../../dumont.sqlite3"]
    command = "; ".join(try_read(str(p)) for p in [*paths, *relative])

    text = run_job(user, command)

    assert LEAK not in text, text
    assert (data / "jwt-secret").exists()


def test_a_job_cannot_read_another_users_job_log(
    server: LocalServer, user: UserSession, make_user: Callable[[], UserSession]
) -> None:
    victim = make_user()
    job_a = running_job_of(victim)
    log_a = job_dir(server, str(job_a["id"])) / "job.log"
    wait_until(lambda: "a-started" in log_a.read_text(), what="A's first line")
    command = "; ".join(
        [try_read(str(log_a)), try_read(f"../../{job_a['id']}/job.log"), "ls /workspace/.."]
    )

    text = run_job(user, command)

    open_gate(server, str(job_a["id"]))
    assert LEAK not in text, text
    assert str(job_a["id"]) not in text and "jobs" not in text.split()
    wait_for(victim, str(job_a["id"]), "completed")


def test_a_job_cannot_read_etc_shadow(user: UserSession) -> None:
    text = run_job(user, f"{try_read('/etc/shadow')}; id -u")

    assert LEAK not in text
    # Not the server's own uid (root on CI): 65534 in a user namespace, or under a root server
    # a real unprivileged uid of the user's own.
    uid = int(text.splitlines()[-1])
    assert uid == 65534 if os.getuid() else uid > UID_BASE


def test_a_job_cannot_read_another_runners_environment(
    server: LocalServer, user: UserSession, make_user: Callable[[], UserSession]
) -> None:
    victim = make_user()
    token = f"hf_victim_{uuid.uuid4().hex}"
    job_a = running_job_of(victim, hf_token=token)
    runner_pid = runner_state(server, str(job_a["id"]))["pid"]
    command = (
        f"cat /proc/{runner_pid}/environ 2>/dev/null | tr '\\0' '\\n' | grep HF_TOKEN; "
        "cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep HF_TOKEN; "
        "ps -e -o pid= | wc -l"
    )

    text = run_job(user, command)

    open_gate(server, str(job_a["id"]))
    assert token not in text
    # Only its own processes: bwrap (init), bash, ps, wc.
    assert int(text.split()[-1]) <= 5, text


def test_a_job_cannot_signal_another_users_job(
    server: LocalServer, user: UserSession, make_user: Callable[[], UserSession]
) -> None:
    victim = make_user()
    job_a = running_job_of(victim)
    state = runner_state(server, str(job_a["id"]))
    pids = [state["pid"], state["child_pgid"]]
    command = "; ".join(
        f"kill -9 {pid} 2>/dev/null && echo {LEAK} {pid}; kill -9 -{pid} 2>/dev/null"
        f" && echo {LEAK} -{pid}"
        for pid in pids
    )

    text = run_job(user, command)

    assert LEAK not in text, text
    assert get_job(victim, str(job_a["id"]))["status"] == "running"
    open_gate(server, str(job_a["id"]))
    assert wait_for(victim, str(job_a["id"]), "completed")["exit_code"] == 0


def leftovers(marker: str) -> list[int]:
    """Live processes named `marker` (their argv[0], set by `exec -a`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
            except OSError:
                continue
            if cmdline.split(b"\0")[0] == marker.encode() and state not in ("Z", "X"):
                found.append(int(entry.name))
    return found


def escapees(marker: str) -> str:
    """Shell that leaves three processes behind: setsid, env -i + setsid, and a double fork."""
    sleeper = f"exec -a {marker} sleep 300"
    return (
        f"setsid bash -c '{sleeper}' </dev/null >/dev/null 2>&1 & "
        f"env -i /bin/bash -c \"setsid bash -c '{sleeper}' &\" </dev/null >/dev/null 2>&1; "
        f"( ( bash -c '{sleeper}' </dev/null >/dev/null 2>&1 & ) & ); "
    )


def test_processes_a_job_leaves_behind_end_when_it_is_cancelled(user: UserSession) -> None:
    marker = f"dumont-leftover-{uuid.uuid4().hex[:10]}"
    job = create_job(user, command=f"{escapees(marker)} sleep 300")
    wait_until(lambda: len(leftovers(marker)) == 3, what="the three leftovers to start")

    with user.http() as http:
        assert http.post(f"/api/v1/jobs/{job['id']}/cancel").status_code == 200

    wait_until(lambda: not leftovers(marker), timeout=10, what="the leftovers to end")


def test_processes_a_job_leaves_behind_end_when_it_exits(user: UserSession) -> None:
    marker = f"dumont-leftover-{uuid.uuid4().hex[:10]}"
    command = f"{escapees(marker)} while [ $(pgrep -fc {marker}) -lt 3 ]; do sleep 0.05; done"
    job = create_job(user, command=command)
    wait_for(user, job["id"], "completed")

    wait_until(lambda: not leftovers(marker), timeout=10, what="the leftovers to end")


def test_no_rank_reads_the_control_plane_its_runner_or_another_ranks_files(
    server: LocalServer, user: UserSession
) -> None:
    """Each rank of a 2-node job tries the control plane's secret and database, its job's own
    folder (spec, state, the logs the runner writes) and the other rank's workspace, by the
    host's paths: none is there. Its runner (which holds the job's secrets) is not visible."""
    job = create_job(user, command=f"touch mine; {GATE}", num_nodes=2)
    wait_for(user, job["id"], "running")
    folder = job_dir(server, str(job["id"]))
    wait_until(lambda: (folder / "rank-1" / "workspace" / "mine").exists(), what="rank 1 up")
    data = server.data_dir
    paths = [data / "jwt-secret", data / "dumont.sqlite3"]
    paths += [folder / name for name in ("spec.json", "state.json", "job.log", "rank-1.log")]
    paths += [folder / "workspace" / "mine", folder / "rank-1" / "workspace" / "mine"]
    runner_pid = runner_state(server, str(job["id"]))["pid"]
    command = "; ".join(
        [*(try_read(str(p)) for p in paths), try_read(f"/proc/{runner_pid}/environ")]
    )
    probe = create_job(user, command=command, num_nodes=2)
    wait_for(user, probe["id"], "completed")
    open_gate(server, str(job["id"]))
    open_gate_of_rank(server, str(job["id"]), 1)
    with user.http() as http:
        texts = [
            http.get(f"/api/v1/jobs/{probe['id']}/logs", params={"rank": r}).json()["logs"]
            for r in (0, 1)
        ]
    assert all(LEAK not in text for text in texts), texts
    wait_for(user, job["id"], "completed")


def open_gate_of_rank(server: LocalServer, job_id: str, rank: int) -> None:
    (job_dir(server, job_id) / f"rank-{rank}" / "workspace" / ".gate").touch()


@pytest.mark.parametrize("end", ["cancel", "a rank fails"])
def test_no_process_of_any_rank_outlives_its_group(
    server: LocalServer, user: UserSession, end: str
) -> None:
    """Every rank of a 3-node job ignores SIGTERM and leaves three processes behind; the group
    ends by a cancel, or by rank 0's failure (its ranks 1-2 are stopped): none is left."""
    marker = f"dumont-rank-leftover-{uuid.uuid4().hex[:10]}"
    fail = 'if [ "$RANK" = 0 ]; then while [ ! -e .fail ]; do sleep 0.05; done; exit 4; fi; '
    command = f"trap '' TERM HUP INT; {escapees(marker)} {fail if end != 'cancel' else ''}"
    job = create_job(user, command=f"{command}sleep 300", num_nodes=3)
    wait_until(lambda: len(leftovers(marker)) == 9, what="three leftovers per rank")

    if end == "cancel":
        with user.http() as http:
            assert http.post(f"/api/v1/jobs/{job['id']}/cancel").status_code == 200
    else:
        (job_dir(server, str(job["id"])) / "workspace" / ".fail").touch()  # rank 0's
        failed = wait_for(user, job["id"], "failed")
        assert failed["error_message"] == "rank 0: command exited with code 4"

    wait_until(lambda: not leftovers(marker), timeout=10, what="every rank's leftovers to end")
    assert not tagged_pids(str(job["id"]))


def test_a_job_starts_with_no_signal_blocked(user: UserSession) -> None:
    timed = "s=$SECONDS; timeout 1 sleep 6 || echo took=$((SECONDS - s))"
    command = f"grep SigBlk /proc/self/status; {timed}"
    text = run_job(user, command)

    assert "SigBlk:\t0000000000000000\n" in text
    assert int(text.rpartition("took=")[2]) <= 3, text


def test_the_servers_environment_does_not_reach_jobs(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "postgres://admin:pw@db/prod", "WANDB_KEY": "wandb-marker"}
    with private_server(tmp_path / "plane", env) as server:
        session = new_user(server.url)
        text = run_job(session, "env")
    assert "DATABASE_URL" not in text and "wandb-marker" not in text
    assert "HOME=/workspace\n" in text and "DUMONT_WORKSPACE=/workspace\n" in text


def test_a_foreign_host_header_is_refused(server: LocalServer) -> None:
    port = server.url.rsplit(":", 1)[1]
    rebound = httpx.get(server.url + "/health", headers={"Host": f"attacker.example:{port}"})
    bare = httpx.get(server.url + "/health", headers={"Host": "attacker.example"})
    own = httpx.get(server.url + "/health", headers={"Host": f"localhost:{port}"})

    assert rebound.status_code == 400
    assert rebound.json() == {
        "error": f"Invalid Host header 'attacker.example:{port}': "
        "this server answers only to its own name"
    }
    assert bare.status_code == 400
    assert own.status_code == 200


def test_the_server_reports_its_isolation(server: LocalServer) -> None:
    capabilities = httpx.get(server.url + "/health").json()["capabilities"]
    assert {"isolation.bwrap", "process-limit.enforced", "users.multi"} <= set(capabilities)


def test_a_non_loopback_bind_needs_multi_user(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dumont_plan.server",
            "--data-dir",
            str(tmp_path),
            "--host",
            "0.0.0.0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: --host 0.0.0.0 is not a loopback address; a control plane reachable from"
        " other machines must be started with --multi-user"
    )


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Path]:
    """The embedded server as `dumont server start` starts it; its data dir."""
    home = tmp_path / "home"
    home.mkdir()
    directory = home / ".local" / "share" / "dumont-plan"
    started = run_cli(["server", "start"], cli_env(home))
    assert started.returncode == 0, started.stderr
    yield directory
    stop_server(directory)


def test_the_embedded_server_is_single_user_and_its_files_are_private(embedded: Path) -> None:
    directory = embedded
    url = json.loads((directory / "server.json").read_text())["url"]
    creds = local_credentials(directory)
    registered = httpx.post(
        url + "/api/v1/auth/register", json={"email": "intruder@example.com", "password": PASSWORD}
    )
    assert registered.status_code == 403
    assert registered.json() == {
        "error": "Registration is closed: this control plane is single-user (its local user only);"
        " start it with `dumont server start --multi-user` to let others register"
    }
    login = httpx.post(url + "/api/v1/auth/login", json=creds)
    token = login.json()["token"]
    with httpx.Client(base_url=url) as http:
        session = UserSession(creds["email"], token, DumontClient(http), url)
        run_job(session, "echo private > /workspace/out.txt", output_paths=["out.txt"])

    loose = []
    for path in [directory, *directory.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if not path.is_symlink() and mode & 0o077:
            loose.append(f"{path.relative_to(directory)} {oct(mode)}")
    assert loose == []
    assert json.loads((directory / "local-user.json").read_text())["email"] == creds["email"]
    assert os.stat(directory / "dumont.sqlite3").st_mode & 0o777 == 0o600


def test_an_instances_leftover_processes_end_when_it_is_deleted(
    server: LocalServer, user: UserSession
) -> None:
    marker = f"dumont-leftover-{uuid.uuid4().hex[:10]}"
    data = server.data_dir
    probe = f"{try_read(str(data / 'jwt-secret'))} > probe.txt; ls / >> probe.txt"
    with user.http() as http:
        offer = reliable_offer(http)
        iid = create(http, offer["id"], onstart_cmd=f"{probe}; {escapees(marker)} sleep 300")["id"]
        wait_for_instance(http, iid, actual("running"), timeout=120)
        wait_until(lambda: len(leftovers(marker)) == 3, what="the three leftovers to start")
        seen = (workspace(server, iid) / "probe.txt").read_text()

        assert http.delete(f"{INSTANCES}/{iid}").status_code == 200

    wait_until(lambda: not leftovers(marker), timeout=10, what="the leftovers to end")
    assert LEAK not in seen and "workspace" in seen.split()


def test_a_job_runs_with_limits(user: UserSession) -> None:
    text = run_job(user, "ulimit -u; ulimit -n; ulimit -f; ulimit -d", disk_size=10)

    processes, files, file_blocks, data = text.split()
    assert (processes, files) == ("1024", "4096")
    assert int(file_blocks) * 1024 == 10 * 1024**3  # bash counts 1024-byte blocks
    assert data != "unlimited"


FORKS = """python - <<'END'
import os
started = 0
for _ in range(400):
    try:
        pid = os.fork()
    except OSError:
        continue
    if pid == 0:
        os.execv("/bin/sleep", ["sleep", "60"])
    started += 1
print("started", started, flush=True)
END
sleep 2"""


def processes_of(job_id: str, uid: int) -> list[int]:
    """The job's live processes that run as `uid` (all but bwrap, which runs as root)."""
    found = []
    for pid in tagged_pids(job_id):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        line = next((x for x in status.splitlines() if x.startswith("Uid:")), "Uid: -1")
        if line.split()[1] == str(uid) and "State:\tZ" not in status:
            found.append(pid)
    return found


@pytest.mark.skipif(os.getuid() != 0, reason="the limit counts the server user's processes")
def test_a_job_cannot_start_more_processes_than_its_limit_under_root(tmp_path: Path) -> None:
    env = {"DUMONT_SERVER_WORKLOAD_PROCESSES": "64"}
    with private_server(tmp_path / "plane", env) as server:
        session = new_user(server.url)
        job = create_job(session, command=FORKS)
        job_id = str(job["id"])
        wait_for(session, job_id, {"running", "completed", "failed"})
        uid = json.loads((job_dir(server, job_id) / "spec.json").read_text())["sandbox"]["uid"]
        counts = []
        while get_job(session, job_id)["status"] in {"pending", "running"}:
            counts.append(len(processes_of(job_id, uid)))
        final = wait_for(session, job_id, {"completed", "failed"})
        text = logs(session, job_id)
        wait_until(lambda: not tagged_pids(job_id), timeout=10, what="the job's processes to end")

    assert uid > UID_BASE and final["status"] == "completed", text
    started = int(text.rpartition("started ")[2].split()[0])
    assert 30 < started < 64, text  # bash and python count too
    assert 30 < max(counts) <= 64, counts


def test_a_multi_user_server_refuses_to_start_without_isolation(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "dumont_plan.server", "--data-dir", str(tmp_path)]
    done = subprocess.run(
        [*command, "--multi-user", "--isolation", "none"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: a multi-user control plane runs other users' jobs and needs workload isolation,"
        " which is not available: --isolation none was given"
    )
