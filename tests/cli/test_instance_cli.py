"""`dumont instance …` and `dumont model install` end to end against the real control plane."""

from __future__ import annotations

import json
import stat
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dumont_plan.cli.app import app
from dumont_plan.client import DumontClient
from dumont_plan.wire_models import Instance
from dumont_plan.wizard import REGION_COUNTRIES
from tests.cli.instancekit import Cli, ok
from tests.support import UserSession, assert_invisible_to, cli_env, new_user, run_cli


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def wait_running(client: DumontClient, instance_id: int, limit: float = 60) -> Instance:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        instance = client.instances.get(instance_id)
        if instance.is_running:
            return instance
        time.sleep(0.1)
    raise AssertionError(f"instance {instance_id} never ran")


def running_instance(client: DumontClient) -> Instance:
    """A running instance on the cheapest reliable machine (reliability >= 0.95 never fails)."""
    offer = client.instances.offers(min_reliability=0.95, limit=1)[0]
    created = client.instances.create(offer.id, disk_size=50)
    return wait_running(client, created.id)


def rows(result: subprocess.CompletedProcess[str]) -> list[list[str]]:
    """The table's data rows, split on its column separator."""
    return [
        [cell.strip() for cell in line.split("│")]
        for line in ok(result).stdout.splitlines()
        if "│" in line
    ]


# ----------------------------------------------------------------------------- list / get


def test_list_empty(run: Cli) -> None:
    assert ok(run("instance", "list")).stdout.strip() == "(none)"
    assert json.loads(ok(run("instance", "list", "--output", "json")).stdout) == {
        "instances": [],
        "count": 0,
    }


@pytest.mark.slow
def test_list_and_get_a_running_instance(run: Cli, user: UserSession) -> None:
    instance = running_instance(user.client)
    iid = instance.id

    table = rows(run("instance", "list"))
    assert len(table) == 1
    assert table[0][:3] == [str(iid), "running", instance.gpu_name]
    assert table[0][5] == f"dumont instance exec {iid} -- COMMAND"  # no sshd on loopback
    for words in (["status=running"], ["--status=running"], ["-s", "running"]):
        listed = json.loads(ok(run("instance", "list", *words, "--output", "json")).stdout)
        assert [i["id"] for i in listed["instances"]] == [iid], words
    assert ok(run("instance", "list", "status=paused")).stdout.strip() == "(none)"

    got = json.loads(ok(run("instance", "get", str(iid), "--output", "json")).stdout)
    assert got["id"] == iid and got["actual_status"] == "running"
    fields = ok(run("instance", "get", str(iid))).stdout
    assert f"id               {iid}\n" in fields
    assert "status           running\n" in fields


@pytest.mark.slow
def test_pause_then_list_paused_then_resume(run: Cli, user: UserSession) -> None:
    iid = running_instance(user.client).id

    paused = ok(run("instance", "pause", str(iid)))
    assert paused.stdout.strip() == f"Instance {iid} paused successfully"

    # `paused` is the people's word; the provider reports `stopped` (both forms find it).
    table = rows(run("instance", "list", "status=paused"))
    assert [row[:2] for row in table] == [[str(iid), "paused"]]
    # Billed at its storage rate while paused, not at the machine's full price.
    billed = user.client.instances.get(iid).raw["billed_dph"]
    assert 0 < billed < 0.05
    assert table[0][3] == f"${billed:.3f}/h (paused)"
    listed = json.loads(ok(run("instance", "list", "--status=paused", "-o", "json")).stdout)
    assert [(i["id"], i["status"]) for i in listed["instances"]] == [(iid, "stopped")]
    assert ok(run("instance", "list", "status=running")).stdout.strip() == "(none)"
    assert "status           paused\n" in ok(run("instance", "get", str(iid))).stdout

    resumed = ok(run("instance", "resume", str(iid)))
    assert str(iid) in resumed.stdout
    wait_running(user.client, iid)
    table = rows(run("instance", "list", "status=running"))
    assert [row[:2] for row in table] == [[str(iid), "running"]]


@pytest.mark.slow
def test_delete_prints_what_it_deleted_without_asking(run: Cli, user: UserSession) -> None:
    instance = running_instance(user.client)
    iid = instance.id

    result = ok(run("instance", "delete", str(iid)))

    assert result.stdout.startswith(f"Deleted instance {iid} ({instance.gpu_name}, $")
    assert result.stdout.rstrip().endswith("/h).")
    assert user.client.instances.list() == []
    assert error_line(run("instance", "get", str(iid))) == (
        f"Error: instance {iid} not found; list yours with `dumont instance list`"
    )
    assert error_line(run("instance", "delete", str(iid))) == (
        f"Error: instance {iid} not found; list yours with `dumont instance list`"
    )


@pytest.mark.slow
def test_instances_are_invisible_to_other_users(run: Cli, user: UserSession) -> None:
    iid = running_instance(user.client).id
    other = new_user(user.url)

    assert other.client.instances.list() == []
    assert_invisible_to(
        other,
        [
            ("GET", f"/api/v1/instances/{iid}"),
            ("POST", f"/api/v1/instances/{iid}/pause"),
            ("POST", f"/api/v1/instances/{iid}/resume"),
            ("DELETE", f"/api/v1/instances/{iid}"),
        ],
    )
    assert user.client.instances.get(iid).is_running


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["get", "abc"],
            "Error: instance id 'abc' is not a number; use an id from `dumont instance list`",
        ),
        (
            ["pause", "1.5"],
            "Error: instance id '1.5' is not a number; use an id from `dumont instance list`",
        ),
        (
            ["list", "status=zombie"],
            "Error: instance list: status 'zombie' is unknown; use one of: running, paused, "
            "stopped, loading, created, exited, offline",
        ),
        (
            ["list", "running"],
            "Error: instance list: unexpected argument 'running'; "
            "filter with status=running or --status=paused",
        ),
        (
            ["list", "state=running"],
            "Error: instance list: unknown option 'state'; use one of: status",
        ),
        (
            ["offers", "--max-price=-1"],
            "Error: instance offers: max price -1 must be above 0 ($/h); e.g. --max-price=1.0",
        ),
        (
            ["get", "999999"],
            "Error: instance 999999 not found; list yours with `dumont instance list`",
        ),
    ],
)
def test_bad_input(run: Cli, args: list[str], message: str) -> None:
    assert error_line(run("instance", *args)) == message


# ----------------------------------------------------------------------------- offers


def test_offers_with_filters(run: Cli) -> None:
    found = json.loads(
        ok(
            run(
                "instance",
                "offers",
                "--gpu=RTX 4090",
                "--max-price=1.0",
                "--region=EU",
                "--limit=20",
                "--output",
                "json",
            )
        ).stdout
    )

    offers = found["offers"]
    assert 0 < len(offers) <= 20 and found["count"] == len(offers)
    assert {o["gpu_name"] for o in offers} == {"RTX 4090"}
    assert all(o["dph_total"] <= 1.0 for o in offers)
    assert all(o["geolocation"].rsplit(", ", 1)[1] in REGION_COUNTRIES["EU"] for o in offers)
    prices = [o["dph_total"] for o in offers]
    assert prices == sorted(prices)

    table = rows(run("instance", "offers", "gpu=RTX 4090", "max_price=1.0", "--limit=3"))
    assert len(table) == 3
    assert all(row[1] == "RTX 4090" for row in table)
    assert [int(row[0]) for row in table] == [
        o["id"]
        for o in json.loads(
            ok(
                run(
                    "instance", "offers", "--gpu=RTX 4090", "--max-price=1", "-n", "3", "-o", "json"
                )
            ).stdout
        )["offers"]
    ]


def test_offers_default_table(run: Cli) -> None:
    table = rows(run("instance", "offers"))
    assert len(table) == 20
    assert all(row[3].startswith("$") and row[3].endswith("/h") for row in table)


# ----------------------------------------------------------------------------- model install


def model_env(user: UserSession, home: Path, bin_dir: Path) -> dict[str, str]:
    env = cli_env(home, user.url, user.token)
    env["PATH"] = str(bin_dir)
    return env


@pytest.mark.slow
def test_model_install_without_ollama_says_how_to_fix(
    run: Cli, user: UserSession, home: Path, tmp_path: Path
) -> None:
    iid = running_instance(user.client).id
    empty = tmp_path / "bin"
    empty.mkdir()

    result = run_cli(["model", "install", str(iid), "llama3"], model_env(user, home, empty))

    assert error_line(result) == (
        f"Error: cannot install llama3 on instance {iid}: no `ollama` binary on this machine "
        "(the local control plane runs instances here); install Ollama "
        "(https://ollama.com/download) and retry"
    )


def fake_ollama(bin_dir: Path, exit_code: int = 0) -> Path:
    """A stand-in `ollama` (the real binary cannot be installed here) that records its call."""
    bin_dir.mkdir(exist_ok=True)
    record = bin_dir / "calls.txt"
    script = bin_dir / "ollama"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$* OLLAMA_HOST=${{OLLAMA_HOST:-unset}}" >> "{record}"\n'
        'echo "pulling manifest"\n'
        f"[ {exit_code} -eq 0 ] && echo success || "
        'echo "Error: pull model manifest: file does not exist"\n'
        f"exit {exit_code}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return record


@pytest.mark.slow
def test_model_install_pulls_with_ollama(
    run: Cli, user: UserSession, home: Path, tmp_path: Path
) -> None:
    instance = running_instance(user.client)
    iid = instance.id
    record = fake_ollama(tmp_path / "bin")
    env = model_env(user, home, tmp_path / "bin")
    env["OLLAMA_HOST"] = "127.0.0.1:11434"

    result = ok(run_cli(["model", "install", str(iid), "llama3", "--output", "json"], env))

    assert json.loads(result.stdout) == {
        "instance_id": iid,
        "model": "llama3",
        "ollama_url": "http://127.0.0.1:11434",
        "gpu": instance.gpu_name,
        "status": "ready",
    }
    assert "pulling manifest" in result.stderr and "success" in result.stderr
    assert record.read_text().splitlines() == ["pull llama3 OLLAMA_HOST=127.0.0.1:11434"]


@pytest.mark.slow
def test_model_install_reports_a_failed_pull(
    run: Cli, user: UserSession, home: Path, tmp_path: Path
) -> None:
    iid = running_instance(user.client).id
    fake_ollama(tmp_path / "bin", exit_code=1)

    result = run_cli(
        ["model", "install", str(iid), "nope"], model_env(user, home, tmp_path / "bin")
    )

    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: `ollama pull nope` failed: Error: pull model manifest: file does not exist; "
        "check the model name (https://ollama.com/library) and that `ollama serve` is running"
    )


@pytest.mark.slow
def test_model_install_needs_a_running_instance(
    run: Cli, user: UserSession, home: Path, tmp_path: Path
) -> None:
    iid = running_instance(user.client).id
    user.client.instances.pause(iid)
    record = fake_ollama(tmp_path / "bin")

    result = run_cli(
        ["model", "install", str(iid), "llama3"], model_env(user, home, tmp_path / "bin")
    )

    assert error_line(result) == (
        f"Error: instance {iid} is paused, not running; "
        f"resume it first: `dumont instance resume {iid}`"
    )
    assert not record.exists()


# ----------------------------------------------------------------------------- help


@pytest.mark.parametrize(
    "command",
    [
        ["instance", "list"],
        ["instance", "get"],
        ["instance", "pause"],
        ["instance", "resume"],
        ["instance", "delete"],
        ["instance", "offers"],
        ["model", "install"],
        ["history", "summary"],
        ["history", "list"],
        ["history", "stats"],
        ["history", "problematic"],
        ["history", "reliable"],
        ["blacklist", "list"],
        ["blacklist", "add"],
        ["blacklist", "remove"],
        ["blacklist", "check"],
    ],
)
def test_every_command_has_help_with_examples(command: list[str]) -> None:
    result = CliRunner().invoke(
        app, [*command, "--help"], prog_name="dumont", env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "Examples:" in result.output
    assert f"dumont {' '.join(command)}" in result.output
