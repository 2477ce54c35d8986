"""DUMONT_DEBUG=1: after the usual `Error: …` line, the chain of causes and the traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dumont_plan.cli.app import causes
from dumont_plan.errors import ConfigError, DumontError
from tests.support import cli_env, run_cli

BAD_PORT = "http://127.0.0.1:99999"
BAD_PORT_LINE = f"Error: DUMONT_API_URL has an invalid port: '{BAD_PORT}'; use a number 1-65535"


def auth_me(home: Path, url: str, debug: str | None) -> subprocess.CompletedProcess[str]:
    env = cli_env(home, url)
    if debug is not None:
        env["DUMONT_DEBUG"] = debug
    return run_cli(["auth", "me"], env)


def test_debug_prints_each_cause_and_the_traceback_after_the_error_line(home: Path) -> None:
    result = auth_me(home, BAD_PORT, "1")
    assert (result.returncode, result.stdout) == (1, "")
    lines = result.stderr.splitlines()
    assert lines[:4] == [
        BAD_PORT_LINE,
        "DUMONT_DEBUG: the error and its causes, outermost first:",
        f"  dumont_plan.errors.ConfigError: {BAD_PORT_LINE.removeprefix('Error: ')}",
        "  caused by ValueError: Port out of range 0-65535",
    ]
    trace = "\n".join(lines[4:])
    assert trace.startswith("Traceback (most recent call last):")
    assert "The above exception was the direct cause of the following exception:" in trace
    assert 'config.py", line' in trace
    assert lines[-1] == f"dumont_plan.errors.ConfigError: {BAD_PORT_LINE.removeprefix('Error: ')}"


@pytest.mark.parametrize("debug", [None, "", "0"])
def test_without_debug_the_error_is_one_line(home: Path, debug: str | None) -> None:
    result = auth_me(home, BAD_PORT, debug)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", BAD_PORT_LINE + "\n")


def test_debug_does_not_chain_a_decode_error_that_would_show_a_token_byte(home: Path) -> None:
    credentials = home / ".config" / "dumont-plan" / "credentials.json"
    credentials.parent.mkdir(parents=True)
    credentials.write_bytes(b'{"http://127.0.0.1:1": {"token": "tok\xe9n"}}')
    result = auth_me(home, "http://127.0.0.1:1", "1")
    assert result.returncode == 1
    assert result.stderr.startswith(f"Error: credentials file {credentials} is corrupt (not UTF-8")
    assert "caused by" not in result.stderr
    assert "0xe9" not in result.stderr


def test_causes_follow_the_cause_then_the_unsuppressed_context() -> None:
    root = KeyError("k")
    try:
        try:
            raise root
        except KeyError as exc:
            raise ValueError("inner") from exc
    except ValueError:
        try:
            raise ConfigError("outer")  # implicit context: the ValueError being handled
        except ConfigError as outer:
            chain = causes(outer)
    assert [type(e) for e in chain] == [ConfigError, ValueError, KeyError]
    quiet = DumontError("quiet")
    quiet.__context__ = chain[1]
    quiet.__suppress_context__ = True  # what `raise … from None` sets
    assert causes(quiet) == [quiet]
