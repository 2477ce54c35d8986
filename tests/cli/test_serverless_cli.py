"""`dumont serverless ...` as a user types it: bad input before any request, then the real
local control plane over loopback (enable, status, list, wake, disable, pricing, webhooks)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.cli.instancekit import Cli, ok
from tests.server.serverlessfixtures import advance, paused, running_instance, until_status
from tests.support import LocalServer, UserSession, cli_env, new_user, run_cli


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["enable", "12", "mode=econmic"],
            "Error: serverless enable: mode 'econmic' is unknown; did you mean mode=economic? "
            "(modes: fast, economic, spot)",
        ),
        (
            ["enable", "12", "--mode=turbo"],
            "Error: serverless enable: mode 'turbo' is unknown; use one of: fast, economic, spot",
        ),
        (
            ["enable", "12", "idle_timeout=1"],
            "Error: serverless enable: idle timeout 1s is out of range; "
            "use 2-3600 seconds, e.g. --idle-timeout=30",
        ),
        (
            ["enable", "12", "--idle-timeout=3601"],
            "Error: serverless enable: idle timeout 3601s is out of range; "
            "use 2-3600 seconds, e.g. --idle-timeout=30",
        ),
        (
            ["enable", "12", "--idle-timeout=soon"],
            "Error: serverless enable: idle timeout 'soon' is not a whole number of seconds; "
            "e.g. --idle-timeout=30 (2-3600)",
        ),
        (
            ["enable", "12", "gpu_threshold=101"],
            "Error: serverless enable: GPU threshold 101% is out of range; "
            "use 0-100 (percent), e.g. --gpu-threshold=5",
        ),
        (
            ["enable", "12", "idle_timout=30"],
            "Error: serverless enable: unknown option 'idle_timout'; did you mean idle_timeout=?",
        ),
        (
            ["enable", "12", "keep_warm=maybe"],
            "Error: serverless enable: keep_warm=maybe: expected true or false; use keep_warm=true",
        ),
        (
            ["enable", "12", "mode=fast", "--mode=spot"],
            "Error: serverless enable: --mode is given twice ('fast' and 'spot'); give it once",
        ),
        (
            ["enable", "12", "cpu_standby=true", "mode=spot"],
            "Error: serverless enable: cpu_standby means mode fast, not spot; drop one of them",
        ),
        (
            ["enable", "12", "--webhook=ftp://example.org"],
            "Error: serverless enable: webhook 'ftp://example.org' is not an http(s) URL; "
            "e.g. --webhook=https://example.org/hooks/dumont",
        ),
        (
            ["enable", "12", "webhook_secret=hunter2"],
            "Error: serverless enable: the webhook secret is not taken from a key=value word "
            "(it would stay in your shell's history); export DUMONT_WEBHOOK_SECRET=... or pass "
            "--webhook-secret=- to type it unseen",
        ),
        (
            ["enable", "12", "--webhook-secret=abc"],
            "Error: serverless enable: a webhook secret without a webhook; add --webhook=URL",
        ),
        (
            ["enable", "twelve"],
            "Error: serverless enable: instance id 'twelve' is not a number; "
            "use an id from `dumont instance list`",
        ),
        (
            ["status", "3.5"],
            "Error: serverless status: instance id '3.5' is not a number; "
            "use an id from `dumont instance list`",
        ),
        (
            ["enable", "12", "economic"],
            "Error: serverless enable: unexpected argument 'economic'; give options as key=value "
            "or --flag=value, e.g. mode=economic idle_timeout=30",
        ),
    ],
)
def test_bad_input_is_one_line_before_any_request(
    home: Path, args: list[str], message: str
) -> None:
    result = run_cli(["serverless", *args], cli_env(home))
    assert error_line(result) == message
    assert "hunter2" not in result.stdout + result.stderr
    # Refused before anything started: no embedded control plane was brought up for it.
    assert not (home / ".local" / "share" / "dumont-plan" / "server.json").exists()


# -- against the real local control plane ----------------------------------------------------


def running(user: UserSession) -> int:
    with user.http() as http:
        return running_instance(http)


@pytest.mark.slow
def test_enable_in_both_forms_then_status_list_and_disable(run: Cli, user: UserSession) -> None:
    iid = running(user)
    out = ok(run("serverless", "enable", str(iid), "mode=economic", "idle_timeout=30")).stdout
    assert out.startswith(
        f"Serverless enabled on instance {iid}: economic, pauses after 30s below 5% GPU; "
        "wakes in ~30s."
    ), out
    flags = ["--mode=fast", "--idle-timeout=45", "--gpu-threshold=7.5", "--keep-warm"]
    out = ok(run("serverless", "enable", str(iid), *flags)).stdout
    assert f"instance {iid}: fast, kept warm (never paused automatically); wakes in <1s." in out
    policy = user.client.serverless.status(iid)
    assert (policy.mode, policy.idle_timeout_seconds, policy.gpu_threshold) == ("fast", 45, 7.5)
    assert policy.keep_warm is True

    table = ok(run("serverless", "status", str(iid))).stdout
    rows = {line.split()[0]: line.split()[1:] for line in table.splitlines() if line.strip()}
    assert rows["mode"] == ["fast"] and rows["idle_timeout"] == ["45s"]
    assert rows["gpu_threshold"] == ["8%"] and rows["keep_warm"] == ["True"]
    assert rows["state"][0] in ("active", "idle") and rows["savings"] == ["$0.00"]
    data = json.loads(ok(run("serverless", "status", str(iid), "-o", "json")).stdout)
    assert (data["instance_id"], data["mode"], data["is_paused"]) == (iid, "fast", False)

    listed = json.loads(ok(run("serverless", "list", "--output", "json")).stdout)
    assert listed["count"] == 1 and listed["instances"][0]["instance_id"] == iid
    table = ok(run("serverless", "list")).stdout
    assert "INSTANCE" in table and "WILL PAUSE AT" in table and f"{iid}" in table

    out = ok(run("serverless", "disable", str(iid))).stdout
    assert f"Serverless disabled for instance {iid}" in out
    assert error_line(run("serverless", "status", str(iid))) == (
        f"Error: instance {iid} has no serverless policy (Instance {iid} not configured for "
        f"serverless); enable one with `dumont serverless enable {iid} mode=economic`, or list "
        "them with `dumont serverless list`"
    )
    assert ok(run("serverless", "list")).stdout.strip() == "(none)"


def test_cpu_standby_is_fast_mode(run: Cli, user: UserSession) -> None:
    """The sprint's "enable fast (with CPU standby)": both spellings give mode fast."""
    iid = running(user)
    out = ok(run("serverless", "enable", str(iid), "cpu_standby=true", "idle_timeout=60")).stdout
    assert out.startswith(f"Serverless enabled on instance {iid}: fast, pauses after 60s")
    assert user.client.serverless.status(iid).mode == "fast"
    ok(run("serverless", "enable", str(iid), "--mode=economic"))
    ok(run("serverless", "enable", str(iid), "--cpu-standby", "-o", "json"))
    assert user.client.serverless.status(iid).mode == "fast"


def test_list_shows_only_your_own(run: Cli, user: UserSession, server: LocalServer) -> None:
    other = new_user(server.url)
    with other.http() as http:
        theirs = running_instance(http)
    try:
        other.client.serverless.enable(theirs, mode="economic")
        listed = json.loads(ok(run("serverless", "list", "-o", "json")).stdout)
        assert listed == {"count": 0, "instances": []}
        refused = run("serverless", "enable", str(theirs), "mode=fast")
        assert error_line(refused).startswith(
            f"Error: serverless enable: instance {theirs} not found"
        )
        assert other.client.serverless.status(theirs).mode == "economic"
    finally:
        other.client.instances.delete(theirs, missing_ok=True)


@pytest.mark.slow
def test_wake_shows_progress_and_the_measured_cold_start(run: Cli, user: UserSession) -> None:
    iid = running(user)
    ok(run("serverless", "enable", str(iid), "mode=fast", "idle_timeout=2", "gpu_threshold=50"))
    with user.http() as http:
        until_status(http, iid, lambda body: body["idle_since"] is not None)
        advance(http, 5)
        until_status(http, iid, paused)
    assert "paused" in ok(run("serverless", "status", str(iid))).stdout
    out = ok(run("serverless", "wake", str(iid))).stdout
    lines = out.strip().splitlines()
    assert lines[0].startswith(f"Waking instance {iid} (fast)... 0s"), out
    assert re.fullmatch(
        rf"Instance {iid} is running \(fast, \w+\): cold start \d+\.\d\ds\.", lines[-1]
    ), out
    # An inference in flight keeps it awake: with a 2 s idle timeout, a slow CLI run under
    # load would otherwise find it paused again.
    user.client.serverless.inference_start(iid)
    again = json.loads(ok(run("serverless", "wake", str(iid), "-o", "json")).stdout)
    assert again == {"instance_id": iid, "status": "already_running"}
    assert (
        ok(run("serverless", "wake", str(iid)))
        .stdout.strip()
        .endswith(f"Instance {iid} is already running.")
    )


@pytest.mark.slow
def test_webhook_secret_from_the_environment_is_never_printed(
    run: Cli, user: UserSession, home: Path
) -> None:
    iid = running(user)
    env = cli_env(home, user.url, user.token) | {"DUMONT_WEBHOOK_SECRET": "hook-SECRET-4321"}
    done = run_cli(
        ["serverless", "enable", str(iid), "--webhook=http://127.0.0.1:9/hook", "mode=economic"],
        env,
    )
    assert ok(done).stdout.splitlines()[-1] == "Webhook: http://127.0.0.1:9/hook (signed)."
    shown = ok(run("serverless", "status", str(iid), "-o", "json")).stdout
    shown += ok(run("serverless", "status", str(iid))).stdout
    shown += ok(run("serverless", "webhooks", str(iid), "-o", "json")).stdout
    assert "http://127.0.0.1:9/hook" in shown
    assert "SECRET" not in done.stdout + done.stderr + shown
    short = run_cli(
        ["serverless", "enable", str(iid), "--webhook=http://127.0.0.1:9/hook"],
        cli_env(home, user.url, user.token) | {"DUMONT_WEBHOOK_SECRET": "short"},
    )
    assert error_line(short) == (
        "Error: serverless enable: the webhook secret has 5 characters; use 8-256 characters "
        "(e.g. from `openssl rand -hex 32`)"
    )
    piped = run_cli(
        ["serverless", "enable", str(iid), "--webhook=http://127.0.0.1:9/h", "--webhook-secret=-"],
        cli_env(home, user.url, user.token),
        input="piped-SECRET-value\n",
    )
    assert "(signed)" in ok(piped).stdout and "SECRET" not in piped.stdout + piped.stderr


def test_pricing_per_mode_for_people_and_scripts(run: Cli, user: UserSession) -> None:
    iid = running(user)
    ok(run("serverless", "enable", str(iid), "mode=economic"))
    data = json.loads(ok(run("serverless", "pricing", "-o", "json")).stdout)
    assert data["monthly_costs"]["serverless_economic"]["cost_usd"] == 39.0
    assert [i["instance_id"] for i in data["instances"]] == [iid]
    table = ok(run("serverless", "pricing")).stdout
    assert "always on" in table and "economic" in table and "$216.00" in table
    assert "Idle $/h while paused: fast $0.010/h, economic $0.005/h, spot $0.005/h" in table
    mine = [line for line in table.splitlines() if line.strip().startswith(str(iid))]
    assert len(mine) == 3 and any("economic *" in line for line in mine), table


def test_unknown_instances_and_missing_policies_are_one_line(run: Cli) -> None:
    assert error_line(run("serverless", "enable", "999999", "mode=fast")).startswith(
        "Error: serverless enable: instance 999999 not found"
    )
    for command in ("status", "disable", "wake", "webhooks"):
        line = error_line(run("serverless", command, "999999"))
        assert line.startswith("Error: instance 999999 has no serverless policy"), line


@pytest.mark.slow
def test_a_spot_wake_under_an_impossible_bid_fails_with_the_reason(
    run: Cli, user: UserSession
) -> None:
    iid = running(user)
    ok(
        run(
            "serverless",
            "enable",
            str(iid),
            "--mode=spot",
            "--idle-timeout=2",
            "--max-price=0.0001",
        )
    )
    with user.http() as http:
        until_status(http, iid, lambda body: body["idle_since"] is not None)
        advance(http, 5)
        until_status(http, iid, paused)
    line = error_line(run("serverless", "wake", str(iid)))
    assert line.startswith(f"Error: serverless wake: instance {iid} did not wake: wake failed: "), (
        line
    )
    assert "under the max price $0.0001/h" in line
    assert line.endswith(
        f"raise its bid (`dumont serverless enable {iid} mode=spot --max-price=...`) "
        "or try again later"
    ), line
    status = json.loads(ok(run("serverless", "status", str(iid), "-o", "json")).stdout)
    assert status["is_paused"] is True and status["status"] == "wake_failed"
    assert "wake_failed" in ok(run("serverless", "list")).stdout
