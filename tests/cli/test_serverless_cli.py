"""`dumont serverless ...` as a user types it: bad input before any request, then the real
local control plane over loopback (enable, status, list, wake, disable, pricing, webhooks)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support import cli_env, run_cli


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
