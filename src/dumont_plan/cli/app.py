"""The typer app of `dumont` and its one error boundary."""

from __future__ import annotations

import os
import sys
from typing import ClassVar

import typer
from typer._click import exceptions as click_exceptions

from dumont_plan import __version__
from dumont_plan.cli.lazy import LazyCommand, LazyEntry, LazyGroup, LazyGroups
from dumont_plan.errors import DumontError

SPEC = "dumont_plan.cli.spec_cmds"
PLAN = "dumont_plan.cli.declarative"
APPLY = "dumont_plan.cli.apply_cmds"
STATE = "dumont_plan.cli.state_cmds"
DECLARATIVE = "Declarative commands (dumont.yaml / dumontfile)"
GROUPS = "Imperative commands"


class Root(LazyGroups):
    """Every command is imported only when used (cli/lazy.py); this table lists them."""

    entries: ClassVar[dict[str, LazyEntry]] = {
        "validate": LazyCommand(
            SPEC,
            "Check the spec offline: syntax, types, ranges, names, references, cycles.",
            DECLARATIVE,
        ),
        "fmt": LazyCommand(
            SPEC,
            "Rewrite spec files in the canonical layout (2-space indents, tidy spacing; "
            "comments kept).",
            DECLARATIVE,
        ),
        "plan": LazyCommand(
            PLAN,
            "Show what `dumont apply` would do: diff the spec against the live state, with costs.",
            DECLARATIVE,
        ),
        "apply": LazyCommand(
            APPLY,
            "Carry out the plan: create, update, run, pause/resume and delete to match the spec.",
            DECLARATIVE,
        ),
        "destroy": LazyCommand(
            APPLY,
            "Delete everything this spec manages (or --target ADDR and what depends on it).",
            DECLARATIVE,
        ),
        "show": LazyCommand(
            PLAN, "Show a saved plan, or the managed resources with their live status.", DECLARATIVE
        ),
        "refresh": LazyCommand(
            STATE,
            "Update the state from the live objects: record each status, mark the gone ones.",
            DECLARATIVE,
        ),
        "import": LazyCommand(
            STATE,
            "Adopt an existing live object into the state as ADDR (it must be in the spec).",
            DECLARATIVE,
        ),
        "state": LazyCommand(STATE, "Inspect and edit the state (the ledger).", DECLARATIVE),
        "force-unlock": LazyCommand(
            STATE,
            "Remove a stale lock left by a dumont run that is gone (a remote lock: by its ID).",
            DECLARATIVE,
        ),
        "explain": LazyCommand(
            PLAN,
            "Print a kind's field table: what each field's change does (update, replace, ...).",
            DECLARATIVE,
        ),
        "schema": LazyCommand(
            SPEC,
            "Print the JSON Schema of dumont.yaml (for editors: yaml-language-server, VS Code).",
            DECLARATIVE,
        ),
        "auth": LazyGroup(
            "dumont_plan.cli.auth", "Log in to a Dumont API and see who you are.", GROUPS
        ),
        "server": LazyGroup(
            "dumont_plan.cli.server",
            "Manage the local control plane (started automatically when no API URL is set).",
            GROUPS,
        ),
        "job": LazyGroup(
            "dumont_plan.cli.job",
            "Run a command on a GPU machine once, then destroy the machine (Jobs).",
            GROUPS,
        ),
        "finetune": LazyGroup(
            "dumont_plan.cli.finetune",
            "LoRA fine-tunes: train an adapter for a base model on your dataset (Fine-tune).",
            GROUPS,
        ),
        "instance": LazyGroup(
            "dumont_plan.cli.instance",
            "GPU instances: list, inspect, pause, resume, delete, and search offers.",
            GROUPS,
        ),
        "wizard": LazyGroup(
            "dumont_plan.cli.wizard",
            "Deploy a GPU machine by racing several offers (the Deploy Wizard).",
            GROUPS,
        ),
        "serverless": LazyGroup(
            "dumont_plan.cli.serverless",
            "Serverless: instances that pause when idle and wake on demand; endpoints that "
            "scale with their requests, to zero when idle.",
            GROUPS,
        ),
        "model": LazyGroup("dumont_plan.cli.model", "Ollama models on your instances.", GROUPS),
        "history": LazyGroup(
            "dumont_plan.cli.history",
            "Machine history: every attempt to rent and boot a machine, and what it says about "
            "each host (see also `dumont blacklist`).",
            GROUPS,
        ),
        "blacklist": LazyGroup(
            "dumont_plan.cli.blacklist",
            "Blacklisted machines: the wizard race and jobs never rent them.",
            GROUPS,
        ),
        "spot": LazyGroup(
            "dumont_plan.cli.spot",
            "Spot instances with automatic failover: templates, deploy, interruptions, pricing.",
            GROUPS,
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
    epilog=(
        "Examples:\n\n"
        "  dumont validate\n\n"
        "  dumont plan\n\n"
        "  dumont apply --auto-approve\n\n"
        '  dumont job create train --command="python train.py" --gpu="RTX 4090" --wait\n\n'
        "`dumont COMMAND --help` shows a command's options and examples."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: typer's rich help costs ~11x `python -c pass`
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
    backend_config: list[str] | None = typer.Option(
        None,
        "--backend-config",
        metavar="KEY=VALUE",
        help=(
            "A state backend setting KEY=VALUE (repeatable): address, username, password, "
            "token, lock_address, ... Over the spec's `backend:` and DUMONT_BACKEND_<KEY>; "
            "secrets go here or in the environment, never in the spec."
        ),
    ),
    version: bool = typer.Option(
        False, "--version", "-V", callback=_version, is_eager=True, help="Show the version."
    ),
) -> None:
    ctx.obj = {"api_url": api_url, "backend_config": backend_config or []}


def _print_error(text: str) -> None:
    from dumont_plan.cli.output import err_console  # rich: not needed for help

    err_console.print(text, markup=False, soft_wrap=True)


DEBUG_ENV = "DUMONT_DEBUG"


def debugging() -> bool:
    """DUMONT_DEBUG set to anything but empty or `0`."""
    return os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")


def causes(exc: BaseException) -> list[BaseException]:
    """`exc` and what led to it, outermost first: `raise … from` causes, else the exception
    being handled when it was raised (as Python's own traceback follows them)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    return chain


def _print_debug(exc: DumontError) -> None:
    """Under DUMONT_DEBUG: each cause's type and message, then the traceback of the chain."""
    import traceback

    lines = [f"{DEBUG_ENV}: the error and its causes, outermost first:"]
    for depth, item in enumerate(causes(exc)):
        kind = type(item)
        name = (
            kind.__qualname__
            if kind.__module__ == "builtins"
            else f"{kind.__module__}.{kind.__qualname__}"
        )
        text = str(item)
        lines.append(f"  {'caused by ' if depth else ''}{name}{': ' + text if text else ''}")
    lines.append("".join(traceback.format_exception(exc)).rstrip("\n"))
    _print_error("\n".join(lines))


# Terraform's single-dash spellings of options dumont has (`-auto-approve`): accepted as the
# double-dash ones, so muscle memory and copied CI scripts work.
TERRAFORM_FLAGS = frozenset(
    [
        "auto-approve",
        "detailed-exitcode",
        "var",
        "var-file",
        "target",
        "replace",
        "out",
        "destroy",
        "parallelism",
        "check",
        "diff",
        "state",
    ]
)


def terraform_style(args: list[str]) -> list[str]:
    """`-auto-approve` -> `--auto-approve`, `-var=a=1` -> `--var=a=1` (before any `--`)."""
    done: list[str] = []
    for index, arg in enumerate(args):
        if arg == "--":
            return done + args[index:]
        name = arg[1:].split("=", 1)[0]
        done.append("-" + arg if arg.startswith("-") and name in TERRAFORM_FLAGS else arg)
    return done


def run(args: list[str]) -> int:
    """Run the CLI; a DumontError prints `Error: …` on stderr and gives its exit code.

    With DUMONT_DEBUG=1 the error's chain of causes and its traceback follow that line.
    """
    args = terraform_style(args)
    try:
        # Without standalone mode, click answers `raise typer.Exit(code)` by returning the code.
        result = app(args=args, prog_name="dumont", standalone_mode=False)
    except DumontError as exc:
        _print_error(f"Error: {exc}")
        if debugging():
            _print_debug(exc)
        return exc.exit_code
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        _print_error("Aborted.")
        return 1
    except click_exceptions.NoArgsIsHelpError as exc:
        exc.show(file=sys.stderr)
        return 0
    except click_exceptions.ClickException as exc:
        exc.show(file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        _print_error("Interrupted.")
        return 130
    return result if isinstance(result, int) else 0
