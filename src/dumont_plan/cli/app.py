"""The typer app of `dumont` and its one error boundary."""

from __future__ import annotations

import sys
from typing import ClassVar

import typer
from typer._click import exceptions as click_exceptions

from dumont_plan import __version__
from dumont_plan.cli import apply_cmds, declarative, spec_cmds
from dumont_plan.cli.lazy import LazyGroup, LazyGroups
from dumont_plan.cli.output import err_console
from dumont_plan.errors import DumontError


class Root(LazyGroups):
    """The imperative command groups, imported only when used (cli/lazy.py)."""

    groups: ClassVar[dict[str, LazyGroup]] = {
        "auth": LazyGroup("dumont_plan.cli.auth", "Log in to a Dumont API and see who you are."),
        "server": LazyGroup(
            "dumont_plan.cli.server",
            "Manage the local control plane (started automatically when no API URL is set).",
        ),
        "job": LazyGroup(
            "dumont_plan.cli.job",
            "Run a command on a GPU machine once, then destroy the machine (Jobs).",
        ),
        "instance": LazyGroup(
            "dumont_plan.cli.instance",
            "GPU instances: list, inspect, pause, resume, delete, and search offers.",
        ),
        "wizard": LazyGroup(
            "dumont_plan.cli.wizard",
            "Deploy a GPU machine by racing several offers (the Deploy Wizard).",
        ),
        "model": LazyGroup("dumont_plan.cli.model", "Ollama models on your instances."),
        "history": LazyGroup(
            "dumont_plan.cli.history",
            "Machine history: every attempt to rent and boot a machine, and what it says about "
            "each host (see also `dumont blacklist`).",
        ),
        "blacklist": LazyGroup(
            "dumont_plan.cli.blacklist",
            "Blacklisted machines: the wizard race and jobs never rent them.",
        ),
    }


app = typer.Typer(
    cls=Root,
    name="dumont",
    help=(
        "Infrastructure-as-code for the Dumont Cloud GPU platform.\n\n"
        "Declare jobs and instances in dumont.yaml (or dumontfile), then `dumont plan` and "
        "`dumont apply`. With no API URL configured, dumont starts a local control plane on "
        "127.0.0.1 and uses it."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"dumont {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    api_url: str | None = typer.Option(
        None,
        "--api-url",
        help="Dumont API URL (else DUMONT_API_URL, the config file, or the local control plane).",
    ),
    version: bool = typer.Option(
        False, "--version", "-V", callback=_version, is_eager=True, help="Show the version."
    ),
) -> None:
    ctx.obj = {"api_url": api_url}


declarative.register(app)
apply_cmds.register(app)
spec_cmds.register(app)


def run(args: list[str]) -> int:
    """Run the CLI; a DumontError prints `Error: …` on stderr and gives its exit code."""
    try:
        # Without standalone mode, click answers `raise typer.Exit(code)` by returning the code.
        result = app(args=args, prog_name="dumont", standalone_mode=False)
    except DumontError as exc:
        err_console.print(f"Error: {exc}", markup=False, soft_wrap=True)
        return exc.exit_code
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        err_console.print("Aborted.")
        return 1
    except click_exceptions.NoArgsIsHelpError as exc:
        exc.show(file=sys.stderr)
        return 0
    except click_exceptions.ClickException as exc:
        exc.show(file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        err_console.print("Interrupted.")
        return 130
    return result if isinstance(result, int) else 0
