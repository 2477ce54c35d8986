"""`schedule:` and `num_nodes` on a job: what loads, and the one-line errors (place, field, fix)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dumont_plan.kinds.registry import HANDLERS
from tests.spec.test_loader import errors_of, load, write

HEAD = "version: 1\nproject: p\njobs:\n  a:\n    command: 'true'\n"


def spec(folder: Path, lines: str) -> None:
    write(folder, "dumont.yaml", HEAD + lines)


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (
            "    schedule: {cron: every day}\n",
            "dumont.yaml:6:22 jobs.a.schedule.cron: 'every day' is not a cron expression; use "
            "five fields: minute hour day-of-month month day-of-week, e.g. '0 2 * * *'",
        ),
        (
            "    schedule: {cron: '0 2 * * *', tz: Mars/Olympus}\n",
            "dumont.yaml:6:39 jobs.a.schedule.tz: 'Mars/Olympus' is not a timezone; use an IANA "
            "name such as UTC, Europe/Paris or America/New_York",
        ),
        (
            "    schedule: {cron: '0 2 * * *', at: '2026-12-05T02:00Z'}\n",
            "dumont.yaml:6:15 jobs.a.schedule: schedule has both `at` and `cron`; keep `at` for "
            "one run, `cron` for a series",
        ),
        (
            "    schedule: {at: tomorrow}\n",
            "dumont.yaml:6:20 jobs.a.schedule.at: 'tomorrow' is not a date and time; use an ISO "
            'time such as "2026-12-05T02:00Z"',
        ),
        (
            "    schedule: {at: '2026-12-05T02:00Z', tz: UTC}\n",
            "jobs.a.schedule: schedule.tz is for `cron`; `at` takes an offset (+01:00) instead",
        ),
        ("    schedule: {}\n", "jobs.a.schedule: schedule needs `at` or `cron`"),
        (
            "    schedule: {cron: '0 2 * * *'}\n    hf_token: ${secret.HF_TOKEN}\n",
            "jobs.a: `schedule.cron` stores the job as a template, and secrets are never stored",
        ),
        (
            "    schedule: {cron: '0 2 * * *'}\n    setup_script: echo ${secret.KEY}\n",
            "jobs.a: `schedule.cron` stores the job as a template",
        ),
        (
            "    schedule: {cron: '0 2 * * *'}\n    workdir: .\n",
            "jobs.a: `schedule.cron` cannot ship a `workdir`",
        ),
        ("    num_nodes: 17\n", "jobs.a.num_nodes"),
        ("    num_nodes: 0\n", "jobs.a.num_nodes"),
        # A bool is no number (pydantic alone would read `true` as 1 node, 1 retry).
        (
            "    num_nodes: true\n",
            "dumont.yaml:6:16 jobs.a.num_nodes: expected an integer, got true",
        ),
        ("    max_retries: yes\n", "jobs.a.max_retries: expected an integer, got true"),
        ("    disk_size: false\n", "jobs.a.disk_size: expected a number, got false"),
    ],
)
def test_a_bad_schedule_or_num_nodes_is_one_line_naming_the_place(
    tmp_path: Path, lines: str, expected: str
) -> None:
    spec(tmp_path, lines)
    errors = errors_of(tmp_path)
    assert len(errors) == 1, errors
    assert expected in errors[0], errors


def test_values_are_canonical_and_only_what_was_given(tmp_path: Path) -> None:
    spec(
        tmp_path,
        "    num_nodes: 2\n    schedule: {at: '2026-12-05T03:00+01:00'}\n"
        "  b:\n    command: 'true'\n    schedule: {cron: '0  2 * * *'}\n"
        "  c:\n    command: 'true'\n    schedule: {at: 2026-12-05T02:00:00}\n",
    )
    stack = load(tmp_path)
    handler = HANDLERS["job"]
    values = {
        name: handler.desired_values("p", name, stack.resources[f"job.{name}"].spec)
        for name in "abc"
    }
    assert values["a"]["schedule"] == {"at": "2026-12-05T02:00:00Z"}  # UTC
    assert values["a"]["num_nodes"] == 2
    assert values["b"]["schedule"] == {"cron": "0 2 * * *", "tz": "UTC"}  # tz defaults to UTC
    assert values["c"]["schedule"] == {"at": "2026-12-05T02:00:00Z"}  # YAML's own timestamp
    assert values["c"]["num_nodes"] == 1


def test_the_create_body_sends_num_nodes_only_past_one(tmp_path: Path) -> None:
    spec(tmp_path, "    num_nodes: 2\n  b:\n    command: 'true'\n")
    stack = load(tmp_path)
    handler = HANDLERS["job"]
    bodies = {
        name: handler.request_body(
            "p", name, handler.desired_values("p", name, stack.resources[f"job.{name}"].spec)
        )
        for name in "ab"
    }
    assert bodies["a"]["num_nodes"] == 2
    assert "num_nodes" not in bodies["b"]  # the default: the same body as before num_nodes
