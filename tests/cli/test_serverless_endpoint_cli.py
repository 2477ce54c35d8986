"""`dumont serverless endpoint ...` and `dumont serverless stats` as a user types them: bad
input is one line before any request; then a real endpoint on the session's control plane
(create, invoke with a cold start, list, get, update, pause, resume, stats, delete)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.cli.instancekit import Cli, ok
from tests.server.test_endpoints import COMMAND
from tests.support import UserSession, cli_env, run_cli


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
            ["create", "e", "--command=x", "--max=0"],
            "Error: serverless endpoint: --max '0' is not a whole number from 1 to 50; "
            "give --max=N with 1 <= N <= 50",
        ),
        (
            ["create", "e", "--command=x", "--min=3", "--max=2"],
            "Error: serverless endpoint create: --min=3 is above --max=2; "
            "lower --min or raise --max",
        ),
        (
            ["create", "e", "--command=x", "--concurrency=many"],
            "Error: serverless endpoint: --concurrency 'many' is not a whole number from 1 to "
            "1000; give --concurrency=N with 1 <= N <= 1000",
        ),
        (
            ["create", "e", "--command=x", "--env=NOVALUE"],
            "Error: serverless endpoint: --env 'NOVALUE' is not KEY=VALUE; write --env NAME=value",
        ),
        (
            ["update", "ep-00000000"],
            "Error: serverless endpoint update: nothing to change; give --min, --max, "
            "--concurrency, --idle-timeout, --command or --machine-type",
        ),
        (
            ["invoke", "ep-00000000", "--data={bad"],
            "Error: serverless endpoint invoke: --data is not JSON (Expecting property name "
            'enclosed in double quotes: line 1 column 2 (char 1)); give --data=\'{"key": '
            '"value"}\' or --data=@FILE',
        ),
    ],
)
def test_bad_input_is_one_line_before_any_request(
    home: Path, args: list[str], message: str
) -> None:
    result = run_cli(["serverless", "endpoint", *args], cli_env(home))
    assert error_line(result) == message
    assert not (home / ".local" / "share" / "dumont-plan" / "server.json").exists()


def test_endpoint_lifecycle_from_the_cli(cli: Cli, user: UserSession) -> None:
    created = json.loads(
        ok(
            cli(
                "serverless",
                "endpoint",
                "create",
                "echo",
                f"--command={COMMAND}",
                "--max=2",
                "--idle-timeout=30",
                "--env=GREETING=hi",
                "-o",
                "json",
            )
        ).stdout
    )
    endpoint_id = created["id"]
    assert created["auto_scaling"] == {
        "enabled": True,
        "min_instances": 0,
        "max_instances": 2,
        "current_instances": 0,
    }
    first = ok(cli("serverless", "endpoint", "invoke", "echo", "/hello"))
    assert first.stdout == "/hello hi noauth \n"
    assert "cold start" in first.stderr
    posted = json.loads(
        ok(
            cli(
                "serverless",
                "endpoint",
                "invoke",
                endpoint_id,
                "x",
                '--data={"a": 1}',
                "-o",
                "json",
            )
        ).stdout
    )
    assert posted == {"status": 200, "cold_start": False, "body": '/x hi noauth {"a":1}'}

    listed = ok(cli("serverless", "endpoint", "list")).stdout
    assert endpoint_id in listed and "running" in listed
    shown = json.loads(ok(cli("serverless", "endpoint", "get", "echo", "-o", "json")).stdout)
    assert shown["metrics"]["total_requests_24h"] == 2
    assert shown["metrics"]["cold_starts_24h"] == 1
    updated = json.loads(
        ok(cli("serverless", "endpoint", "update", "echo", "--max=3", "-o", "json")).stdout
    )
    assert updated["auto_scaling"]["max_instances"] == 3
    assert "paused" in ok(cli("serverless", "endpoint", "pause", "echo")).stdout
    refused = cli("serverless", "endpoint", "invoke", "echo")
    assert refused.returncode == 1 and "paused" in refused.stderr
    assert "resumed" in ok(cli("serverless", "endpoint", "resume", "echo")).stdout
    stats = json.loads(ok(cli("serverless", "stats", "-o", "json")).stdout)
    assert (stats["total_endpoints"], stats["total_requests_24h"]) == (1, 2)
    assert "deleted" in ok(cli("serverless", "endpoint", "delete", "echo")).stdout
    missing = cli("serverless", "endpoint", "get", "echo")
    assert error_line(missing) == (
        "Error: serverless endpoint: no endpoint named 'echo'; "
        "list yours with `dumont serverless endpoint list`"
    )
    gone = cli("serverless", "endpoint", "get", endpoint_id)
    assert error_line(gone).startswith(
        f"Error: serverless endpoint get: endpoint {endpoint_id} not found"
    )
    assert user.client.endpoints.list() == []
