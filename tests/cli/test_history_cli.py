"""`dumont history …` and `dumont blacklist …` end to end against the real local control plane.

The attempts come from real boots on the simulated market: a machine that fails to boot is
found in the server's seeded catalogue (seed 7, 200 machines, the server's defaults), the same
catalogue the session server serves.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest

from dumont_plan.client import DumontClient
from dumont_plan.server.provider.market import Machine, get_market
from tests.cli.instancekit import Cli, ok
from tests.support import UserSession, new_user


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(result).stdout)


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def always_failing_machine() -> Machine:
    """A one-GPU machine whose first three boots fail for any user (quickest boot first)."""
    candidates = [
        m
        for m in get_market().machines
        if m.num_gpus == 1 and m.disk_space >= 50 and all(m.boot_fails(n) for n in range(3))
    ]
    return min(candidates, key=lambda m: (m.boot_seconds, m.offer_id))


def failed_boot(client: DumontClient, machine: Machine, limit: float = 60) -> int:
    """Rent the machine, wait for its boot to fail, delete it; the instance id."""
    instance_id = int(client.instances.create(machine.offer_id, disk_size=50).id)
    deadline = time.monotonic() + limit
    while not client.instances.get(instance_id).is_failed:
        assert time.monotonic() < deadline, "the boot never failed"
        time.sleep(0.1)
    client.instances.delete(instance_id)
    return instance_id


@pytest.mark.slow
def test_a_failed_boot_is_recorded(run: Cli, user: UserSession) -> None:
    machine = always_failing_machine()

    instance_id = failed_boot(user.client, machine)

    attempts = as_json(run("history", "list", "--output", "json"))
    assert [(a["success"], a["instance_id"], a["machine_id"]) for a in attempts] == [
        (False, str(instance_id), machine.machine_id)
    ]
    assert attempts[0]["failure_stage"] == "loading"
    assert attempts[0]["provider"] == "local"
    table = ok(run("history", "list", "--failed")).stdout
    assert machine.machine_id in table and "failed" in table and "loading" in table
    assert ok(run("history", "list", "--succeeded")).stdout.strip() == "(none)"

    summary = as_json(run("history", "summary", "--provider=local", "--hours=24", "-o", "json"))
    assert (summary["total_attempts"], summary["failed"]) == (1, 1)
    assert summary["failure_stages"] == {"loading": 1}
    assert "failure_stages        loading: 1" in ok(run("history", "summary")).stdout

    stats = as_json(run("history", "stats", "local", machine.machine_id, "-o", "json"))
    assert (stats["total_attempts"], stats["failed_attempts"]) == (1, 1)
    assert "machine_id" in ok(run("history", "stats", "local", machine.machine_id)).stdout

    other = new_user(user.url)
    assert other.client.history.attempts() == []
    assert other.client.history.summary().total_attempts == 0


@pytest.mark.slow
def test_repeated_failures_make_a_machine_problematic_and_blacklisted(
    run: Cli, user: UserSession
) -> None:
    machine = always_failing_machine()
    for _ in range(3):
        failed_boot(user.client, machine)

    problematic = as_json(run("history", "problematic", "--provider=local", "-o", "json"))
    assert [(p["machine_id"], p["total_attempts"]) for p in problematic] == [
        (machine.machine_id, 3)
    ]
    assert machine.machine_id in ok(run("history", "problematic")).stdout
    # The automatic rule (3 consecutive failures) blacklisted it; the wizard will skip it.
    entries = as_json(run("blacklist", "list", "-o", "json"))
    assert [(e["machine_id"], e["blacklist_type"]) for e in entries] == [
        (machine.machine_id, "auto")
    ]
    checked = ok(run("blacklist", "check", "local", machine.machine_id)).stdout
    assert checked.startswith(f"local:{machine.machine_id} is blacklisted.")
    assert new_user(user.url).client.blacklist.list() == []


@pytest.mark.slow
def test_cancelled_race_losers_are_not_failures(run: Cli, user: UserSession) -> None:
    race = as_json(run("wizard", "deploy", "speed=slow", "--output", "json"))
    assert len(race["losers"]) + len(race["failed"]) == 4

    attempts = as_json(run("history", "list", "-o", "json"))
    failed = {int(a["instance_id"]) for a in attempts if not a["success"]}
    assert failed == set(race["failed"])  # only real boot failures, never a cancelled loser
    assert not failed & set(race["losers"])
    summary = as_json(run("history", "summary", "-o", "json"))
    assert summary["failed"] == len(race["failed"])

    reliable = as_json(run("history", "reliable", "--min-attempts=1", "-o", "json"))
    assert race["winner"]["machine_id"] in {r["machine_id"] for r in reliable}


@pytest.mark.slow
def test_blacklist_add_list_check_remove(run: Cli) -> None:
    added = ok(run("blacklist", "add", "local", "12345", "boots fail", "--hours=24"))
    assert added.stdout.startswith("Blacklisted local:12345 until ")
    assert added.stdout.rstrip().endswith(": boots fail")

    entries = as_json(run("blacklist", "list", "--type=manual", "-o", "json"))
    assert [(e["machine_id"], e["reason"], e["blacklist_type"]) for e in entries] == [
        ("12345", "boots fail", "manual")
    ]
    assert "boots fail" in ok(run("blacklist", "list")).stdout
    checked = as_json(run("blacklist", "check", "local", "12345", "-o", "json"))
    assert checked["is_blacklisted"] is True and checked["info"]["reason"] == "boots fail"

    removed = ok(run("blacklist", "remove", "local", "12345"))
    assert removed.stdout.strip() == "Removed local:12345 from the blacklist."
    assert ok(run("blacklist", "check", "local", "12345")).stdout.strip() == (
        "local:12345 is not blacklisted."
    )
    assert error_line(run("blacklist", "remove", "local", "12345")) == (
        "Error: machine local:12345 is not blacklisted; see `dumont blacklist list`"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["history", "summary", "--hours=500"],
            "Error: --hours 500 is out of range; use 1-168 (one week)",
        ),
        (
            ["history", "list", "--failed", "--succeeded"],
            "Error: history list: --failed and --succeeded exclude each other; give one",
        ),
        (
            ["history", "stats", "local", "nope"],
            "Error: no history for machine local:nope; machines get a history once they were "
            "rented; see `dumont history list`",
        ),
        (
            ["blacklist", "list", "--type=bogus"],
            "Error: blacklist list: type 'bogus' is unknown; use one of: auto, manual, temporary",
        ),
        (
            ["blacklist", "add", "local", "1", " "],
            'Error: blacklist add: the reason is empty; say why, e.g. "boots fail"',
        ),
    ],
)
def test_bad_input(run: Cli, args: list[str], message: str) -> None:
    assert error_line(run(*args)) == message
