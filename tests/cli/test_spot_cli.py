"""`dumont spot …` end to end against the real control plane (a subprocess per command)."""

from __future__ import annotations

import subprocess

import pytest

from tests.cli.instancekit import Cli, ok
from tests.support import UserSession


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one `Error: …` line of a refused command, exit 1, nothing on stdout."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# ----------------------------------------------------------------------------- bad input

BAD_INPUT = [
    (
        ["spot", "status", "abc"],
        "Error: spot status: instance id 'abc' is not a number; use an id from `dumont spot list`",
    ),
    (
        ["spot", "failover", "1.5"],
        "Error: spot failover: instance id '1.5' is not a number; use an id from "
        "`dumont spot list`",
    ),
    (
        ["spot", "deploy", "--template=spot_tpl_1_1", "--max-price=20"],
        "Error: spot deploy: --max-price 20 is out of range; use 0.01-10 ($/h)",
    ),
    (
        ["spot", "deploy", "--template=spot_tpl_1_1", "--gpu=RTX4009"],
        "Error: spot deploy: GPU 'RTX4009' is not on the spot market; did you mean 'RTX 4090'?",
    ),
    (
        ["spot", "pricing", "--region=EUR"],
        "Error: spot pricing: no offer of the market is in region 'EUR'; did you mean 'EU'?",
    ),
    (
        ["spot", "pricing", "--gpu=h10"],
        "Error: spot pricing: GPU 'h10' is not on the spot market; did you mean 'H100'?",
    ),
    (
        ["spot", "template", "create", "box"],
        "Error: spot template create: instance id 'box' is not a number; use an id from "
        "`dumont instance list`",
    ),
    (
        ["spot", "template", "create", "12", "--workspace-path=data"],
        "Error: spot template create: --workspace-path 'data' is not an absolute path; "
        "e.g. --workspace-path=/workspace",
    ),
    (
        ["spot", "template", "create", "12", "--region=Atlantis"],
        "Error: spot template create: no offer of the market is in region 'Atlantis'; use one "
        "of: global, any, all, AF, AS, ASIA, AU, BR, CA, DE, EU, FR, IN, JP, KR, NA, NL, OC, "
        "PL, SA, SE, SG, US",
    ),
]


@pytest.mark.parametrize(
    "args,line", BAD_INPUT, ids=lambda v: "-".join(v)[:40] if isinstance(v, list) else ""
)
def test_bad_input_is_one_line_and_exit_1(run: Cli, args: list[str], line: str) -> None:
    assert error_line(run(*args)) == line


def test_an_unknown_spot_instance_is_named_with_the_next_step(run: Cli) -> None:
    assert error_line(run("spot", "status", "999999")) == (
        "Error: spot status: no spot instance 999999 (or it is not yours); "
        "see yours with `dumont spot list`"
    )


def test_dashboard_prints_the_control_plane_page(run: Cli, user: UserSession) -> None:
    result = ok(run("spot", "dashboard", "--open"))  # not a terminal: no browser
    assert result.stdout == f"{user.url}/dashboard\n"
    assert "not a terminal" in result.stderr
