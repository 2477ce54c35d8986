"""`dumont job …` end to end: the CLI in a subprocess against the real local control plane."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dumont_plan.cli.app import run as run_dumont
from dumont_plan.client import DumontClient
from tests.support import UserSession, cli_env

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run(cli: Any) -> Cli:
    return cli  # type: ignore[no-any-return]


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result


def one_error_line(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The command failed with `code` and said so in exactly one `Error: …` line."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines
    return lines[0]


def created(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    job: dict[str, Any] = json.loads(ok(result).stdout)
    assert job["id"].startswith("job_")
    return job


def wait_status(client: DumontClient, job_id: str, statuses: set[str], limit: float = 60) -> Any:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        job = client.jobs.get(job_id)
        if job.status in statuses:
            return job
        time.sleep(0.1)
    raise AssertionError(f"{job_id} never reached {statuses}")


# ----------------------------------------------------------------------------- create forms


def test_create_a_command_job_then_wait_and_read_its_logs(run: Cli) -> None:
    result = ok(run("job", "create", "hello", '--command=echo "hi from job"', "--gpu=RTX 4090"))
    first = result.stdout.splitlines()[0]
    pattern = r"Created job job_[0-9a-f]{8} \(hello\): \w+; RTX 4090 spot at \$[0-9.]+/h"
    assert re.fullmatch(pattern, first), first
    job_id = first.split()[2]
    waited = ok(run("job", "wait", job_id))
    assert "status" in waited.stdout and "completed" in waited.stdout
    assert f"{job_id}" in waited.stderr  # the status line
    assert ok(run("job", "logs", job_id)).stdout.count("hi from job") >= 1


@pytest.mark.slow
def test_create_on_demand_with_timeout_and_disk_waits_for_completion(
    run: Cli, user: UserSession
) -> None:
    job = json.loads(
        ok(
            run(
                "job",
                "create",
                "train",
                '--command=python -c "print(6*7)"',
                "--gpu=RTX 4090",
                "--use-spot=false",
                "--timeout=480",
                "--disk=100",
                "--wait",
                "--output",
                "json",
            )
        ).stdout
    )
    assert (job["name"], job["status"], job["gpu_type"]) == ("train", "completed", "RTX 4090")
    assert job["use_spot"] is False  # additive field of the local control plane
    assert "42" in user.client.jobs.logs(job["id"])["logs"]


@pytest.mark.slow
def test_create_with_setup_pip_num_gpus_and_image(
    run: Cli, user: UserSession, shared_path: Path
) -> None:
    wheel = make_wheel(shared_path, "dumont_cli_probe", "VALUE = 'probe-ok'")
    job = json.loads(
        ok(
            run(
                "job",
                "create",
                "setup",
                "--command=python -c 'import dumont_cli_probe as p; print(p.VALUE)'; cat marker",
                "--setup=echo setup-ran > marker",
                f"--pip={wheel}",
                "--num-gpus=1",
                "--image=pytorch/pytorch:latest",
                "--wait",
                "-o",
                "json",
            )
        ).stdout
    )
    assert job["status"] == "completed"
    log = user.client.jobs.logs(job["id"])["logs"]
    assert "probe-ok" in log and "setup-ran" in log


def test_the_old_key_value_form_creates_the_same_job(run: Cli, user: UserSession) -> None:
    job = created(run("job", "create", "kv", "command=echo kv-form", "gpu=RTX 4090", "-o", "json"))
    assert (job["name"], job["gpu_type"]) == ("kv", "RTX 4090")
    wait_status(user.client, job["id"], {"completed"})


def test_create_from_a_local_git_repo(run: Cli, user: UserSession, shared_path: Path) -> None:
    repo = shared_path / "repo"
    repo.mkdir()
    script = repo / "run.sh"
    script.write_text("#!/bin/sh\necho from-git-$(cat data.txt)\n")
    script.chmod(0o755)
    (repo / "data.txt").write_text("payload\n")
    git = ["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "init"], check=True)
    job = json.loads(
        ok(
            run(
                "job",
                "create",
                "fromgit",
                "--source=git",
                f"--git-url={repo.as_uri()}",
                "--git-branch=main",
                "--command=./run.sh",
                "--wait",
                "-o",
                "json",
            )
        ).stdout
    )
    assert (job["source"], job["status"]) == ("git", "completed")
    assert "from-git-payload" in user.client.jobs.logs(job["id"])["logs"]


@pytest.mark.slow
def test_a_huggingface_token_never_shows(run: Cli, user: UserSession) -> None:
    secret = "hf_" + "S3CRETtokenVALUE1234567890"
    result = run(
        "job",
        "create",
        "hf",
        "--source=huggingface",
        "--hf-repo=user/repo",
        f"--hf-token={secret}",
        "--command=python main.py",
        "-o",
        "json",
    )
    job = created(result)
    assert (job["source"], job["name"]) == ("huggingface", "hf")
    wait_status(user.client, job["id"], {"completed", "failed", "timeout"})  # no hub here
    outputs = [result]
    for args in (
        ("job", "status", job["id"]),
        ("job", "logs", job["id"]),
        ("job", "list", "-o", "json"),
        ("job", "wait", job["id"], "-o", "json"),
    ):
        outputs.append(run(*args))
    for out in outputs:
        assert secret not in out.stdout and secret not in out.stderr


def test_hf_token_env_reads_the_token_from_the_environment(run: Cli) -> None:
    result = run("job", "create", "hf", "--hf-repo=user/repo", "--hf-token-env=NO_SUCH_VARIABLE_X")
    assert one_error_line(result) == (
        "Error: job create: --hf-token-env=NO_SUCH_VARIABLE_X: that environment variable is "
        "not set; export NO_SUCH_VARIABLE_X=... first"
    )


# ----------------------------------------------------------------------------- list / status


@pytest.mark.slow
def test_list_shows_a_table_and_filters_by_status(run: Cli, user: UserSession) -> None:
    good = user.client.jobs.create(name="good", command="true").id
    bad = user.client.jobs.create(name="bad", command="exit 3").id
    wait_status(user.client, good, {"completed"})
    wait_status(user.client, bad, {"failed"})
    table = ok(run("job", "list")).stdout
    header = [cell.strip() for cell in table.splitlines()[0].split("┃")]
    assert header == ["ID", "NAME", "STATUS", "GPU TYPE", "DURATION", "TOTAL COST"]
    assert good in table and bad in table
    failed = json.loads(ok(run("job", "list", "--status=failed", "-o", "json")).stdout)
    assert [j["id"] for j in failed["jobs"]] == [bad]
    old_form = ok(run("job", "list", "status=completed")).stdout
    assert good in old_form and bad not in old_form
    first_only = ok(run("job", "list", "--limit=1")).stdout
    assert bad in first_only and good not in first_only  # newest first
    assert "Showing 1 of 2 jobs; see more with --limit=100 or --all." in first_only
    every = json.loads(ok(run("job", "list", "--all", "-o", "json")).stdout)
    assert sorted(j["id"] for j in every["jobs"]) == sorted([good, bad])


def test_list_refuses_an_unknown_status(run: Cli) -> None:
    assert one_error_line(run("job", "list", "--status=runing")).startswith(
        "Error: job list: --status=runing is not a job status; did you mean 'running'? "
        "use one of: scheduled, pending,"
    )


@pytest.mark.slow
def test_status_of_a_running_job_then_cancel_it(run: Cli, user: UserSession) -> None:
    job_id = user.client.jobs.create(name="sleeper", command="sleep 60").id
    wait_status(user.client, job_id, {"running"})
    shown = ok(run("job", "status", job_id)).stdout
    assert {"id": job_id, "status": "running"}.items() <= fields_of(shown).items()
    as_json = json.loads(ok(run("job", "status", job_id, "-o", "json")).stdout)
    assert as_json["id"] == job_id
    assert ok(run("job", "cancel", job_id)).stdout.startswith(f"Cancelled job {job_id} (sleeper)")
    assert user.client.jobs.get(job_id).status == "cancelled"
    assert one_error_line(run("job", "cancel", job_id)) == (
        f"Error: job cancel: Job {job_id} is already finished; see it with "
        f"`dumont job status {job_id}`"
    )


def fields_of(text: str) -> dict[str, str]:
    pairs = (line.split(None, 1) for line in text.splitlines() if line.strip())
    return {p[0]: p[1] if len(p) > 1 else "" for p in pairs}


@pytest.mark.slow
def test_an_unknown_job_and_someone_elses_read_the_same(
    run: Cli, make_user: Callable[[], UserSession]
) -> None:
    assert one_error_line(run("job", "status", "job_ffffffff")) == (
        "Error: job status: no job job_ffffffff (or it is not yours); see your jobs with "
        "`dumont job list`"
    )
    other = make_user()
    theirs = other.client.jobs.create(name="theirs", command="sleep 60").id
    try:
        for command in ("status", "logs", "cancel", "wait"):
            assert one_error_line(run("job", command, theirs)) == (
                f"Error: job {command}: no job {theirs} (or it is not yours); see your jobs "
                "with `dumont job list`"
            )
        assert other.client.jobs.get(theirs).status != "cancelled"
    finally:
        other.client.jobs.cancel(theirs)


# ----------------------------------------------------------------------------- logs


@pytest.mark.slow
def test_logs_tail_and_follow_print_every_line_once(run: Cli, user: UserSession) -> None:
    script = "for i in $(seq 1 8); do echo n$i; sleep 0.15; done; printf last"
    job_id = user.client.jobs.create(name="count", command=script).id
    followed = ok(run("job", "logs", job_id, "--follow", "--poll", "0.2")).stdout
    ours = [line for line in followed.splitlines() if line.startswith(("n", "last"))]
    assert ours == [*(f"n{i}" for i in range(1, 9)), "last"]
    tail = ok(run("job", "logs", job_id, "--tail=2")).stdout.splitlines()
    assert tail[-1] == "last" and len(tail) == 2
    as_json = json.loads(ok(run("job", "logs", job_id, "--tail=100", "-o", "json")).stdout)
    assert as_json["job_id"] == job_id and "n8" in as_json["logs"]


@pytest.mark.slow
def test_follow_with_json_streams_one_object_per_line(run: Cli, user: UserSession) -> None:
    job_id = user.client.jobs.create(name="j", command="echo a; echo b").id
    wait_status(user.client, job_id, {"completed"})
    out = ok(run("job", "logs", job_id, "--follow", "-o", "json")).stdout
    lines = [json.loads(line) for line in out.splitlines()]
    assert {"job_id": job_id, "line": "a"} in lines and {"job_id": job_id, "line": "b"} in lines


# ----------------------------------------------------------------------------- wait


@pytest.mark.slow
def test_wait_exits_5_when_the_job_fails(run: Cli, user: UserSession) -> None:
    job_id = user.client.jobs.create(name="fails", command="exit 3").id
    result = run("job", "wait", job_id, "-o", "json")
    assert result.returncode == 5, (result.stdout, result.stderr)
    assert json.loads(result.stdout)["status"] == "failed"
    error = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert error == [line for line in error if line.startswith(f"Error: job {job_id} ended failed")]
    assert len(error) == 1 and f"dumont job logs {job_id}" in error[0]


@pytest.mark.slow
def test_create_wait_exits_5_on_failure_and_follow_shows_the_log(run: Cli) -> None:
    result = run("job", "create", "f", "--command=echo before-fail; exit 3", "--follow")
    assert result.returncode == 5, (result.stdout, result.stderr)
    assert "before-fail" in result.stdout


@pytest.mark.slow
def test_wait_exits_4_when_its_own_timeout_elapses(run: Cli, user: UserSession) -> None:
    job_id = user.client.jobs.create(name="slow", command="sleep 60").id
    try:
        result = run("job", "wait", job_id, "--timeout", "1", "--poll", "0.2")
        assert result.returncode == 4, (result.stdout, result.stderr)
        assert f"Error: job {job_id} is still" in result.stderr
        assert "after 1s of waiting" in result.stderr
    finally:
        user.client.jobs.cancel(job_id)


def test_wait_exits_5_for_a_cancelled_job(run: Cli, user: UserSession) -> None:
    job_id = user.client.jobs.create(name="c", command="sleep 60").id
    user.client.jobs.cancel(job_id)
    result = run("job", "wait", job_id)
    assert result.returncode == 5
    assert f"Error: job {job_id} ended cancelled" in result.stderr


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["x"],
            "Error: job create: no command to run; add one, e.g. dumont job create x "
            '--command="python train.py"',
        ),
        (
            ["x", "--command=true", "--num-gpus=9"],
            "Error: job create: the API refused the job: --num-gpus=9: input should be less "
            "than or equal to 8 (use 1–8)",
        ),
        (
            ["x", "--command=true", "--timeout=5"],
            "Error: job create: the API refused the job: --timeout=5: input should be greater "
            "than or equal to 10 (use 10–1440 minutes)",
        ),
        (
            ["x", "--command=true", "--use-spot=maybe"],
            "Error: job create: --use-spot=maybe: expected true or false; use --use-spot=true "
            "or --use-spot=false (or the flags --spot / --no-spot)",
        ),
    ],
)
def test_bad_input_gets_one_clear_line(
    run: Cli, server: Any, args: list[str], expected: str
) -> None:
    assert one_error_line(run("job", "create", *args)) == expected


def test_an_unknown_source_is_refused_in_one_line(run: Cli, user: UserSession) -> None:
    line = one_error_line(run("job", "create", "x", "--source=ftp", "--command=true"))
    assert line.startswith("Error: job create: the API refused the job: --source")
    assert "ftp" in line
    assert user.client.jobs.list().total == 0


def test_no_command_makes_no_request(run: Cli, server: Any) -> None:
    before = server.mutating_requests()
    one_error_line(run("job", "create", "x"))
    assert server.mutating_requests() == before


@pytest.mark.parametrize("command", ["create", "list", "status", "logs", "cancel", "wait"])
def test_every_job_command_has_help_with_an_example(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_dumont(["job", command, "--help"]) == 0
    text = capsys.readouterr().out
    assert f"Usage: dumont job {command}" in text and "Example" in text


# ----------------------------------------------------------------------------- helpers


def make_wheel(where: Path, name: str, source: str) -> Path:
    """A tiny pure-Python wheel built by hand (no network, no build backend)."""
    import base64
    import hashlib
    import zipfile

    version = "0.1"
    path = where / f"{name}-{version}-py3-none-any.whl"
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": source + "\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    records = []
    with zipfile.ZipFile(path, "w") as zf:
        for arc, text in files.items():
            data = text.encode()
            zf.writestr(arc, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            records.append(f"{arc},sha256={digest.decode()},{len(data)}")
        records.append(f"{dist}/RECORD,,")
        zf.writestr(f"{dist}/RECORD", "\n".join(records) + "\n")
    return path


@pytest.mark.slow
def test_ctrl_c_while_following_says_the_job_goes_on(home: Path, user: UserSession) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dumont_plan",
            "job",
            "create",
            "long",
            "--command",
            "echo started; sleep 60",
            "--follow",
        ],
        env=cli_env(home, user.url, user.token),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        for line in proc.stdout:  # the log streams: the job runs
            if "started" in line:
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    job_id = re.search(r"job_[0-9a-f]{8}", err)
    assert job_id is not None, err
    last = err.strip().splitlines()[-1]
    assert last == (
        f"Error: stopped waiting: job {job_id.group()} is running and goes on on the server; "
        f"follow it again: `dumont job logs {job_id.group()} --follow`; stop it: "
        f"`dumont job cancel {job_id.group()}`"
    ), err
    assert "Traceback" not in err
    assert user.client.jobs.get(job_id.group()).status == "running"
    user.client.jobs.cancel(job_id.group())
