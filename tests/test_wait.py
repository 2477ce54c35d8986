from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from dumont_plan.apply.polling import StatusLine, WaitResult, wait_for


class FakeClock:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def states(*statuses: str) -> Any:
    seq = iter(statuses)
    last = {"status": statuses[-1]}

    def fetch() -> dict[str, Any]:
        nonlocal last
        last = {"status": next(seq, last["status"])}
        return last

    return fetch


def done(s: dict[str, Any]) -> bool:
    return bool(s["status"] == "completed")


def failed(s: dict[str, Any]) -> bool:
    return s["status"] in ("failed", "cancelled", "timeout")


def test_wait_ends_on_the_target_state_and_reports_each_tick() -> None:
    clock = FakeClock()
    seen: list[str] = []
    result = wait_for(
        states("pending", "running", "running", "completed"),
        done,
        failed,
        on_tick=lambda s: seen.append(s["status"]),
        poll=2.0,
        clock=clock,
        sleep=clock.sleep,
    )
    assert result == WaitResult({"status": "completed"}, "done", 6.0)
    assert result.ok
    assert seen == ["pending", "running", "running", "completed"]
    assert clock.sleeps == [2.0, 2.0, 2.0]


def test_wait_ends_on_a_terminal_failure() -> None:
    clock = FakeClock()
    result = wait_for(
        states("running", "failed"), done, failed, poll=1.0, clock=clock, sleep=clock.sleep
    )
    assert (result.outcome, result.state, result.ok) == ("failed", {"status": "failed"}, False)


def test_wait_times_out_without_overshooting_the_limit() -> None:
    clock = FakeClock()
    result = wait_for(
        states("running"), done, failed, timeout=5.0, poll=2.0, clock=clock, sleep=clock.sleep
    )
    assert result.outcome == "timeout"
    assert result.elapsed == 5.0
    assert clock.sleeps == [2.0, 2.0, 1.0]


def test_a_state_already_final_needs_no_sleep() -> None:
    clock = FakeClock()
    result = wait_for(states("completed"), done, failed, timeout=0, clock=clock, sleep=clock.sleep)
    assert (result.outcome, clock.sleeps) == ("done", [])


def test_poll_must_be_positive() -> None:
    with pytest.raises(ValueError, match="poll must be positive"):
        wait_for(states("running"), done, failed, poll=0)


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
