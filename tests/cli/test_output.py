"""cli/output.py: the live status line."""

from __future__ import annotations

import io

from rich.console import Console

from dumont_plan.cli.output import StatusLine


def test_status_line_off_a_terminal_prints_only_changes() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=100)
    with StatusLine(console) as line:
        assert not line.live
        line.update("job_1: pending, 1s", key="pending")
        line.update("job_1: pending, 2s", key="pending")
        line.update("job_1: running, 3s", key="running")
        line.update("job_1: running, 4s", key="running")
    assert out.getvalue().splitlines() == ["job_1: pending, 1s", "job_1: running, 3s"]


def test_status_line_on_a_terminal_is_rewritten_in_place() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with StatusLine(console) as line:
        assert line.live
        line.update("job_1: [running]")  # not markup: shown as written
    assert "job_1: [running]" in out.getvalue()
