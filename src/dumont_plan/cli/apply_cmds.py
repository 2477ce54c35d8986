"""`dumont apply` and `dumont destroy`: plan, confirm, carry out, report.

    dumont apply [-f F] [--var K=V] [-y] [--parallelism N] [--target/--exclude/--replace ADDR]
                 [--allow-restart] [--wait/--no-wait] [--wait-timeout S] [--logs] [--json]
                 [--max-cost X] [--state PATH] [PLANFILE]
    dumont destroy [-y] [--target ADDR] ...

The commands parse their options and load the spec; `apply_stack`/`destroy_stack`
(apply/workflow.py) do the steps: lock the state (a second apply stops with the holder's
pid/host/time), observe, plan (or check PLANFILE and refuse what moved since: exit 7), show the
plan, ask `yes` unless -y (a saved plan is not asked again, as in Terraform), apply. Here is
what they call back for: the plan drawn, the question asked, progress shown; then the summary.

Output: the plan, live progress lines and the summary go to people (plan and summary on
stdout, progress on stderr). With `--json`, stdout carries only NDJSON events (`apply/events.py`)
and nothing is asked: pass -y.

Exit codes (DESIGN §3): 0 ok; 1 error (bad spec, plan error, lock held, refused restart);
3 partial apply; 4 a wait timed out; 5 a waited job failed; 6 cost/policy gate; 7 stale plan.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypedDict

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from dumont_plan.cli import durations
from dumont_plan.cli.declarative import ExcludeOpt, ReplaceOpt, TargetOpt
from dumont_plan.cli.output import console, err_console
from dumont_plan.cli.planning import StateOpt, open_state, plan_options
from dumont_plan.cli.spec_cmds import FilesOpt, VarFilesOpt, VarsOpt, load_from_options
from dumont_plan.errors import DumontError

if TYPE_CHECKING:
    from dumont_plan.apply.base import ApplyResult
    from dumont_plan.apply.events import ApplyEvent, EventSink, Redactor
    from dumont_plan.apply.workflow import Applied
    from dumont_plan.client import DumontClient
    from dumont_plan.kinds.ops import KindServices
    from dumont_plan.plan.model import Plan
    from dumont_plan.wire_models import Instance

PROMPT = "Do you want to perform these actions? Only 'yes' will be accepted: "
DESTROY_PROMPT = "Do you really want to destroy these resources? Only 'yes' will be accepted: "

EXIT_CODES = (
    "Exit codes: 0 done; 1 error (nothing applied); 3 partial (some changes failed or were "
    "skipped); 4 a wait timed out; 5 a waited job failed; 6 cost gate (--max-cost); "
    "7 stale saved plan."
)

AutoApproveOpt = Annotated[
    bool,
    typer.Option("--auto-approve", "-y", help="Apply without asking for confirmation."),
]
ParallelismOpt = Annotated[
    int,
    typer.Option("--parallelism", min=1, max=64, help="Changes carried out at once."),
]
JsonOpt = Annotated[
    bool,
    typer.Option("--json", help="Stream NDJSON events on stdout (one JSON object per line)."),
]

DOING = {
    "create": "creating",
    "run": "starting a new run",
    "replace": "replacing",
    "update": "updating",
    "delete": "deleting",
    "pause": "pausing",
    "resume": "resuming",
    "adopt": "adopting",
    "forget": "forgetting",
}
DONE = {
    "create": "created",
    "run": "started",
    "replace": "replaced",
    "update": "updated",
    "delete": "deleted",
    "pause": "paused",
    "resume": "resumed",
    "adopt": "adopted",
    "forget": "forgotten",
}


# -- progress for people ----------------------------------------------------------------------


class ProgressView:
    """Draws apply events on stderr: one live line per address on a terminal, else plain lines.

    A terminal gets a rich Live block rewritten in place (`creating…`, `waiting for completed
    (running 12s)…`, `created in 3.2s (job_1a2b)`); a pipe or file gets one line per event
    (wait progress only when the status changes), so CI logs stay readable.
    """

    def __init__(self, console: Console, *, live: bool | None = None) -> None:
        self.console = console
        self.is_live = console.is_terminal if live is None else live
        self.lines: dict[str, Text | _Ticking] = {}
        self._lock = threading.Lock()
        self._live: Live | None = None
        self._last_status: dict[str, str | None] = {}

    def __enter__(self) -> ProgressView:
        if self.is_live:
            self._live = Live(Group(), console=self.console, refresh_per_second=4, transient=False)
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            # stop() draws the last frame itself: a refresh first drew every final line twice
            # into the terminal's output (seen doubled where cursor movement is not honoured).
            self._live.update(self._group())
            self._live.stop()
            self._live = None

    def _group(self) -> Group:
        return Group(*self.lines.values())

    def __call__(self, event: ApplyEvent) -> None:
        with self._lock:
            self._handle(event)

    def _handle(self, event: ApplyEvent) -> None:
        address = event.address or ""
        action = event.action or ""
        line: Text | _Ticking
        if event.type == "log":
            self._permanent(Text(f"{address} | {event.line}", style="dim"))
            return
        if event.type == "change_start":
            line = _Ticking(f"{address}: {DOING.get(action, action)}… ", 0.0, "")
        elif event.type == "wait_progress":
            target = event.data.get("target", "")
            if not self.is_live and self._last_status.get(address) == event.status:
                return
            self._last_status[address] = event.status
            line = _Ticking(
                f"{address}: waiting for {target} ({event.status} ", event.elapsed or 0.0, ")…"
            )
        elif event.type == "change_done":
            where = f" ({event.remote_id})" if event.remote_id else ""
            line = Text(f"{address}: {DONE.get(action, action)} in {_secs(event)}{where}")
            line.stylize("green")
        elif event.type == "change_failed" and event.data.get("interrupted"):
            where = f" ({event.remote_id})" if event.remote_id else ""
            line = Text(
                f"{address}: stopped waiting after {_secs(event)}{where}: still "
                f"{event.status or 'starting'}, it goes on on the server",
                style="yellow",
            )
        elif event.type == "change_failed":
            line = Text(f"{address}: failed after {_secs(event)}: {event.error}", style="red")
        elif event.type == "change_skipped":
            line = Text(f"{address}: skipped ({event.error})", style="yellow")
        else:
            return
        if self._live is not None:
            self.lines[address] = line
            self._live.update(self._group())
        else:
            text = line.plain() if isinstance(line, _Ticking) else line
            self.console.print(text, soft_wrap=True, highlight=False)

    def _permanent(self, text: Text) -> None:
        if self._live is not None:
            self._live.console.print(text, soft_wrap=True, highlight=False)
        else:
            self.console.print(text, soft_wrap=True, highlight=False)


class _Ticking:
    """A status line whose seconds count up each time the Live block refreshes."""

    def __init__(self, head: str, elapsed: float, tail: str) -> None:
        self.head = head
        self.since = time.monotonic() - elapsed
        self.tail = tail

    def __rich__(self) -> Text:
        return Text(f"{self.head}{time.monotonic() - self.since:.0f}s{self.tail}")

    def plain(self) -> Text:
        """For a log file: the moment's text, without a counter when there is nothing after."""
        return self.__rich__() if self.tail else Text(self.head.rstrip())


def _secs(event: ApplyEvent) -> str:
    return f"{event.elapsed or 0:.1f}s"


# -- the commands -----------------------------------------------------------------------------


def apply(
    ctx: typer.Context,
    planfile: Path | None = typer.Argument(
        None, help="A plan saved with `dumont plan -out FILE`: apply exactly that, if still true."
    ),
    files: FilesOpt = None,
    var: VarsOpt = None,
    var_file: VarFilesOpt = None,
    auto_approve: AutoApproveOpt = False,
    parallelism: ParallelismOpt = 8,
    target: TargetOpt = None,
    exclude: ExcludeOpt = None,
    replace: ReplaceOpt = None,
    allow_restart: bool = typer.Option(
        False, "--allow-restart", help="Allow cancelling and re-running a running job."
    ),
    wait: bool | None = typer.Option(
        None,
        "--wait/--no-wait",
        help=(
            "Wait for every job to complete and every instance to run (--wait), or for "
            "nothing (--no-wait). Default: each resource's `wait:`."
        ),
    ),
    wait_timeout: float | None = typer.Option(
        None,
        "--wait-timeout",
        help="How long a wait may take (30s, 15m, 2h; a bare number is seconds; exit 4 when it "
        "elapses).",
        metavar="DURATION",
        parser=durations.seconds,
    ),
    logs: bool = typer.Option(False, "--logs", help="Stream job logs while waiting."),
    json_events: JsonOpt = False,
    max_cost: float | None = typer.Option(
        None, "--max-cost", min=0, help="Fail (exit 6) when the plan adds more than this $/h."
    ),
    state: StateOpt = None,
) -> None:
    """Carry out the plan: create, update, run, pause/resume and delete to match the spec."""
    from dumont_plan.apply.workflow import ApplySettings, apply_stack
    from dumont_plan.state.planfile import read_plan_file

    saved = read_plan_file(planfile) if planfile is not None else None
    stack = load_from_options(files, var, var_file)
    options = plan_options(
        targets=target,
        excludes=exclude,
        replace=replace,
        destroy=False,
        allow_restart=allow_restart,
        max_cost=max_cost,
    )
    settings = ApplySettings(
        parallelism=parallelism,
        wait=None if wait is None else ("completed" if wait else "none"),
        wait_timeout=wait_timeout,
        logs=logs,
    )
    view = Interaction(ctx, PROMPT, auto_approve=auto_approve, json_events=json_events)
    backend = open_state(ctx, stack, state, files)
    with view.interrupts(), contextlib.closing(backend):
        applied = apply_stack(
            view.connect,
            stack,
            backend,
            options,
            saved=saved,
            settings=settings,
            **view.hooks(),
        )
    view.finish(applied, "Apply")


def destroy(
    ctx: typer.Context,
    files: FilesOpt = None,
    var: VarsOpt = None,
    var_file: VarFilesOpt = None,
    auto_approve: AutoApproveOpt = False,
    parallelism: ParallelismOpt = 8,
    target: TargetOpt = None,
    exclude: ExcludeOpt = None,
    json_events: JsonOpt = False,
    state: StateOpt = None,
) -> None:
    """Delete everything this spec manages (or --target ADDR and what depends on it).

    Jobs still running are cancelled; instances are deleted. Resources with
    `lifecycle.prevent_destroy` stop the whole destroy before anything is deleted.
    """
    from dumont_plan.apply.workflow import destroy_stack

    stack = load_from_options(files, var, var_file)
    options = plan_options(
        targets=target,
        excludes=exclude,
        replace=None,
        destroy=True,
        allow_restart=False,
        max_cost=None,
    )
    view = Interaction(ctx, DESTROY_PROMPT, auto_approve=auto_approve, json_events=json_events)
    backend = open_state(ctx, stack, state, files)
    with view.interrupts(), contextlib.closing(backend):
        applied = destroy_stack(
            view.connect,
            stack,
            backend,
            options,
            parallelism=parallelism,
            **view.hooks(),
        )
    view.finish(applied, "Destroy")


class Hooks(TypedDict):
    """The interactive parts apply_stack and destroy_stack take."""

    show_plan: Callable[[Plan], None] | None
    confirm: Callable[[Plan], bool] | None
    on_event: EventSink | AbstractContextManager[EventSink]
    events_when_empty: bool
    redactor: Redactor
    services: KindServices


class Interaction:
    """The command's side of an apply: the client, the plan on stdout, the question, progress
    (live lines on stderr, or NDJSON on stdout with `--json`), the summary and the exit code."""

    def __init__(
        self, ctx: typer.Context, prompt: str, *, auto_approve: bool, json_events: bool
    ) -> None:
        from dumont_plan.apply.events import Redactor

        self.ctx = ctx
        self.prompt = prompt
        self.auto_approve = auto_approve
        self.json_events = json_events
        self.redactor = Redactor()
        self.connected = False

    def connect(self) -> DumontClient:
        from dumont_plan.cli.session import open_client

        client = open_client(self.ctx)
        self.connected = True
        return client

    def hooks(self) -> Hooks:
        from dumont_plan.apply.events import NdjsonWriter
        from dumont_plan.kinds.ops import KindServices

        progress: EventSink | AbstractContextManager[EventSink]
        if self.json_events:
            progress = NdjsonWriter(sys.stdout, self.redactor)
        else:
            progress = ProgressView(err_console)
        return Hooks(
            show_plan=None if self.json_events else self.show_plan,
            confirm=None if self.auto_approve else self.confirm,
            on_event=progress,
            events_when_empty=self.json_events,
            redactor=self.redactor,
            services=KindServices(model_installer=_install_model_with_ollama),
        )

    def show_plan(self, plan: Plan) -> None:
        from dumont_plan.plan.render import render_plan

        console.print(render_plan(plan))

    def confirm(self, plan: Plan) -> bool:
        if self.json_events or not sys.stdin.isatty():
            why = "--json output" if self.json_events else "stdin is not a terminal"
            raise DumontError(
                f"apply needs a confirmation and cannot ask for it ({why})",
                "pass -y/--auto-approve to apply without asking",
            )
        err_console.print("")
        try:
            answer = input(self.prompt)
        except EOFError:
            answer = ""
        return answer.strip() == "yes"

    @contextlib.contextmanager
    def interrupts(self) -> Iterator[None]:
        """Ctrl-C once the API is in use: say that the state holds what was done."""
        try:
            yield
        except KeyboardInterrupt:
            if self.connected:
                err_console.print(
                    "Interrupted: every change made so far is in the state; "
                    "`dumont apply` again finishes the rest."
                )
            raise

    def finish(self, applied: Applied, word: str) -> None:
        if applied.refused:
            raise DumontError(
                "apply cancelled: nothing was changed", "answer exactly `yes` to apply"
            )
        result = applied.result
        if result is None:
            return
        if not self.json_events:
            _print_summary(result, word)
        if result.bugs:
            raise result.bugs[0]
        if result.exit_code:
            raise typer.Exit(result.exit_code)


def _print_summary(result: ApplyResult, word: str) -> None:
    if result.ok:
        head = f"{word} complete: {len(result.done)} done in {result.elapsed:.1f}s."
    else:
        head = (
            f"{word} finished with problems: {len(result.done)} done, "
            f"{len(result.failed)} failed, {len(result.skipped)} skipped."
        )
    console.print("")
    console.print(head, style="bold" if result.ok else "bold red", highlight=False)
    if result.done:
        console.print("  done:    " + ", ".join(result.done), highlight=False, soft_wrap=True)
    for address, error in result.failed.items():
        console.print(f"  failed:  {address}: {error}", highlight=False, soft_wrap=True)
    for address, why in result.skipped.items():
        console.print(f"  skipped: {address} ({why})", highlight=False, soft_wrap=True)


def _install_model_with_ollama(client: DumontClient, live: Instance, model: str) -> None:
    """Pull one of `instances.*.models` the way `dumont model install` pulls it."""
    from dumont_plan.cli.model import PULL_TIMEOUT_SECONDS, ollama_host, pull

    binary = shutil.which("ollama")
    if binary is None:
        raise DumontError(
            f"cannot install model {model} on instance {live.id}: no `ollama` "
            "binary on this machine",
            "install Ollama (https://ollama.com/download) and apply again",
        )
    pull(binary, model, ollama_host(live), PULL_TIMEOUT_SECONDS)


def register(app: typer.Typer) -> None:
    """Add `apply` and `destroy` to the top-level app."""
    app.command("apply", epilog=EXIT_CODES)(apply)
    app.command("destroy", epilog=EXIT_CODES)(destroy)
