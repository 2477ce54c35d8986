"""The typer app of `dumont` and its one error boundary."""

from __future__ import annotations

import sys

import typer
from typer._click import exceptions as click_exceptions

from dumont_plan import __version__
from dumont_plan.cli import (
    apply_cmds,
    auth,
    blacklist,
    declarative,
    history,
    instance,
    job,
    model,
    server,
    spec_cmds,
    wizard,
)
from dumont_plan.cli.output import err_console
from dumont_plan.errors import DumontError

app = typer.Typer(
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


app.add_typer(auth.app, name="auth")
app.add_typer(server.app, name="server")
app.add_typer(job.app, name="job")
app.add_typer(instance.app, name="instance")
app.add_typer(wizard.app, name="wizard")
app.add_typer(model.app, name="model")
app.add_typer(history.app, name="history")
app.add_typer(blacklist.app, name="blacklist")
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
