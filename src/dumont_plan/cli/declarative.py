"""The declarative read side: plan, show, explain (state commands: cli/state_cmds.py).

(`apply`/`destroy` live in cli/apply_cmds.py, `validate`/`fmt`/`schema` in cli/spec_cmds.py.)
Heavy modules (pydantic models, the planner, rich renderables) are imported inside the
commands so `dumont --help` stays fast.

Exit codes of `plan`: 0 no changes (or changes without --detailed-exitcode), 2 changes with
--detailed-exitcode, 1 an error (a plan error lists every problem), 6 a cost gate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dumont_plan.cli import state_cmds
from dumont_plan.cli.output import OutputFormat, OutputOpt, console, emit_json
from dumont_plan.cli.planning import (
    StateOpt,
    live_statuses,
    open_api,
    plan_options,
    print_state,
    read_state,
)
from dumont_plan.cli.spec_cmds import FilesOpt, VarFilesOpt, VarsOpt, load_from_options


def complete_address(incomplete: str) -> list[str]:
    """Shell completion of an address: those of the spec here and of its state file."""
    import json

    from dumont_plan.kinds.registry import SECTIONS
    from dumont_plan.loader.inputs import DEFAULT_FILES
    from dumont_plan.loader.yamlmarks import parse_yaml

    found: set[str] = set()
    here = Path.cwd()
    for name in DEFAULT_FILES:
        try:
            text = (here / name).read_text(encoding="utf-8")
        except OSError:
            continue
        doc = parse_yaml(text, name, [])
        data = doc.data if doc is not None else None
        for section, items in data.items() if isinstance(data, dict) else ():
            if section in SECTIONS and isinstance(items, dict):
                found.update(f"{SECTIONS[section]}.{item}" for item in items)
        break
    try:
        state = json.loads((here / ".dumont" / "state.json").read_text(encoding="utf-8"))
        found.update(str(address) for address in state.get("resources") or {})
    except (OSError, ValueError, AttributeError):
        pass
    return sorted(a for a in found if a.startswith(incomplete))


TargetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--target",
        metavar="ADDR",
        help="Plan only ADDR and what it depends on (repeatable).",
        autocompletion=complete_address,
    ),
]
ExcludeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--exclude",
        metavar="ADDR",
        help="Leave out ADDR and what depends on it (repeatable).",
        autocompletion=complete_address,
    ),
]
ReplaceOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--replace",
        autocompletion=complete_address,
        metavar="ADDR",
        help="Replace ADDR (a finished job: run it again) (repeatable).",
    ),
]


# -- plan ---------------------------------------------------------------------------------


def plan(
    ctx: typer.Context,
    files: FilesOpt = None,
    var: VarsOpt = None,
    var_file: VarFilesOpt = None,
    target: TargetOpt = None,
    exclude: ExcludeOpt = None,
    replace: ReplaceOpt = None,
    destroy: bool = typer.Option(False, "--destroy", help="Plan to delete everything managed."),
    allow_restart: bool = typer.Option(
        False, "--allow-restart", help="Allow cancelling and re-running a running job."
    ),
    max_cost: float | None = typer.Option(
        None, "--max-cost", min=0, help="Fail (exit 6) when the plan adds more than this $/h."
    ),
    out: Path | None = typer.Option(
        None, "-out", "--out", help="Save the plan to this file for `dumont apply FILE`."
    ),
    detailed_exitcode: bool = typer.Option(
        False,
        "--detailed-exitcode",
        help="Exit 2 when there are changes or resources blocked by a failed run (0: none, "
        "1: error).",
    ),
    output: OutputOpt = OutputFormat.table,
    state: StateOpt = None,
) -> None:
    """Show what `dumont apply` would do: diff the spec against the live state, with costs."""
    from dumont_plan.apply.observe import Prefetch, kinds_of
    from dumont_plan.apply.plan_flow import check_errors, check_policy, plan_stack
    from dumont_plan.cli.main import early_reads, imports_done
    from dumont_plan.plan.render import plan_json, render_plan
    from dumont_plan.state.planfile import write_plan_file

    imports_done()

    stack = load_from_options(files, var, var_file)
    options = plan_options(
        targets=target,
        excludes=exclude,
        replace=replace,
        destroy=destroy,
        allow_restart=allow_restart,
        max_cost=max_cost,
        fingerprints=out is not None or output is OutputFormat.json,
    )
    client = open_api(ctx)
    try:
        # The server lists the spec's kinds while the state is read (apply/observe.Prefetch).
        early = early_reads()
        prefetch = Prefetch(client, kinds_of(stack, None), early.started if early else None)
        ledger = read_state(ctx, stack, state, files)
        result = plan_stack(client, stack, ledger, options, prefetched=prefetch).plan
    finally:
        client.close()
    check_errors(result)
    if output is OutputFormat.json:
        emit_json(plan_json(result))
    else:
        console.print(render_plan(result))
    check_policy(result)
    if out is not None:
        write_plan_file(result, out)
        if output is not OutputFormat.json:
            console.print(f"\nSaved the plan to {out}; `dumont apply {out}` carries it out.")
    if detailed_exitcode and (result.has_changes or result.blocked):
        raise typer.Exit(2)


# -- show / explain -----------------------------------------------------------------------


def show(
    ctx: typer.Context,
    planfile: Path | None = typer.Argument(
        None, help="A plan saved with `dumont plan -out FILE` (default: the current state)."
    ),
    files: FilesOpt = None,
    output: OutputOpt = OutputFormat.table,
    state: StateOpt = None,
) -> None:
    """Show a saved plan, or the managed resources with their live status."""
    from dumont_plan.plan.render import plan_json, render_plan
    from dumont_plan.state.planfile import read_plan_file

    if planfile is not None:
        saved = read_plan_file(planfile)
        if output is OutputFormat.json:
            emit_json(plan_json(saved))
        else:
            console.print(render_plan(saved))
        return
    ledger = read_state(ctx, None, state, files)
    statuses = live_statuses(ctx, ledger) if ledger.state.resources else {}
    print_state(ledger, statuses, output, with_status=True)


def explain(
    kind: str = typer.Argument(
        ...,
        help="A kind, as in an address or its spec section: job, instance, finetune, "
        "serverless, serverless_endpoint, spot_template, spot_deployment (or jobs, ...).",
    ),
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Print a kind's field table: what each field's change does (update, replace, ...)."""
    from dumont_plan.kinds.base import CLASS_HELP
    from dumont_plan.kinds.registry import handler_for
    from dumont_plan.plan.render import render_fields

    handler = handler_for(kind)
    if output is OutputFormat.json:
        emit_json(
            {
                "kind": handler.kind,
                "section": handler.section,
                "fields": {
                    name: {
                        "class": cls.value,
                        "meaning": CLASS_HELP[cls],
                        "note": handler.notes.get(name),
                        "unordered": name in handler.unordered,
                    }
                    for name, cls in handler.fields.items()
                },
            }
        )
        return
    console.print(render_fields(handler))


def register(app: typer.Typer) -> None:
    """Add the declarative read-side commands to the top-level app."""
    app.command("plan")(plan)
    app.command("show")(show)
    app.command("explain")(explain)
    state_cmds.register(app)
