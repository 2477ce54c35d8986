"""The people's view of apply events: plain lines in a log, a live block on a terminal."""

from __future__ import annotations

import io

from rich.console import Console

from dumont_plan.apply.events import ApplyEvent
from dumont_plan.cli.apply_cmds import ProgressView

EVENTS = [
    ApplyEvent("apply_start", data={"changes": 2, "parallelism": 8}),
    ApplyEvent("change_start", address="job.a", action="create"),
    ApplyEvent(
        "wait_progress",
        address="job.a",
        action="create",
        status="running",
        elapsed=1.0,
        data={"target": "completed"},
    ),
    ApplyEvent(
        "wait_progress",
        address="job.a",
        action="create",
        status="running",
        elapsed=6.0,
        data={"target": "completed"},
    ),
    ApplyEvent("log", address="job.a", line="epoch 1"),
    ApplyEvent("change_failed", address="job.a", action="create", elapsed=7.25, error="boom"),
    ApplyEvent("change_skipped", address="job.b", action="create", error="job.a failed"),
    ApplyEvent("apply_done", data={"exit_code": 3}),
]


def test_a_log_file_gets_one_line_per_event_and_status() -> None:
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=False, no_color=True)
    with ProgressView(console) as view:
        for event in EVENTS:
            view(event)
    assert out.getvalue().splitlines() == [
        "job.a: creating…",
        "job.a: waiting for completed (running 1s)…",
        "job.a | epoch 1",
        "job.a: failed after 7.2s: boom",
        "job.b: skipped (job.a failed)",
    ]


def test_a_terminal_gets_a_live_block_ending_with_each_address_once() -> None:
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=True, no_color=True)
    with ProgressView(console) as view:
        assert view.is_live
        for event in EVENTS:
            view(event)
    drawn = out.getvalue()
    assert "job.a | epoch 1" in drawn  # printed above the live block, kept
    last_frame = drawn.rsplit("\x1b[2K", 1)[-1]  # the block as it was left on the screen
    assert last_frame.replace("\x1b[?25h", "").splitlines() == [
        "job.a: failed after 7.2s: boom",
        "job.b: skipped (job.a failed)",
    ]


def test_a_final_line_is_written_once_on_a_terminal() -> None:
    """On a terminal the live block's last frame is drawn once (a doubled final line showed on
    terminals that do not honour the cursor moves)."""
    import io

    from rich.console import Console

    from dumont_plan.apply.events import ApplyEvent
    from dumont_plan.cli.apply_cmds import ProgressView

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with ProgressView(console, live=True) as view:
        view(ApplyEvent("change_start", address="job.a", action="replace"))
        view(
            ApplyEvent(
                "change_done", address="job.a", action="replace", elapsed=2.3, remote_id="job_1"
            )
        )
    assert out.getvalue().count("replaced in 2.3s") == 1
