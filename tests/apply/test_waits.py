"""apply/waits.py: the generic wait loop (on a fake clock) and the log follower."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from dumont_plan.apply.waits import LogFollower, WaitResult, wait_for
from dumont_plan.errors import ServiceUnavailableError


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


class FakeLogs:
    """`client.jobs.logs(id)` answering with a log that the test grows (or fails)."""

    def __init__(self) -> None:
        self.text = ""
        self.down = False

    def logs(
        self, job_id: str, tail: int | None = None, offset: int | None = None
    ) -> dict[str, Any]:
        """Like the real platform: the whole log (no `offset` parameter, no `next_offset`)."""
        if self.down:
            raise ServiceUnavailableError("down")
        return {"job_id": job_id, "logs": self.text}


def follower(kind: str = "job") -> tuple[LogFollower, FakeLogs, list[str]]:
    logs = FakeLogs()
    lines: list[str] = []
    client = SimpleNamespace(jobs=logs)
    handler = SimpleNamespace(kind=kind)
    emit = lambda event: lines.append(f"{event.address} {event.remote_id} {event.line}")  # noqa: E731
    follow = LogFollower(
        client, handler, "job.a", "job_1", emit, lambda t: t.replace("s3cr3t", "***")
    )  # type: ignore[arg-type]
    return follow, logs, lines


def test_log_follower_emits_whole_lines_once_redacted_and_the_rest_at_the_end() -> None:
    follow, logs, lines = follower()
    logs.text = "epoch 1\nepo"
    follow.poll("running")
    follow.poll("running")
    logs.text += "ch 2 s3cr3t\nlast"
    follow.poll("running")
    follow.poll("completed", final=True)
    assert lines == ["job.a job_1 epoch 1", "job.a job_1 epoch 2 ***", "job.a job_1 last"]


def test_log_follower_waits_for_the_job_to_start_and_skips_a_failed_read() -> None:
    follow, logs, lines = follower()
    logs.text = "booting\n"
    follow.poll("provisioning")
    logs.down = True
    follow.poll("running")
    assert lines == []
    logs.down = False
    follow.poll("running")
    assert lines == ["job.a job_1 booting"]


def test_log_follower_rereads_a_restarted_log_and_splits_carriage_returns() -> None:
    follow, logs, lines = follower()
    logs.text = "first try\nsecond\n"
    follow.poll("running")
    logs.text = "retry\n10%\r50%\r\n\n"
    follow.poll("running")
    assert [line.removeprefix("job.a job_1 ") for line in lines] == [
        "first try",
        "second",
        "retry",
        "10%",
        "50%",
        "",
    ]


def test_log_follower_follows_only_jobs() -> None:
    follow, logs, lines = follower(kind="instance")
    logs.text = "x\n"
    follow.poll("running", final=True)
    assert lines == []
