"""`dumont spot template create|list|delete`: snapshots of an instance's workspace.

A template is what a spot deployment restores on each new machine; its id
(`spot_tpl_<instance_id>_<unix_seconds>`) is what `dumont spot deploy --template=` takes.
"""

from __future__ import annotations

import typer

from dumont_plan.cli.output import (
    OutputFormat,
    OutputOpt,
    console,
    emit_json,
    print_table,
)
from dumont_plan.cli.session import open_client
from dumont_plan.cli.spot_market import resolve_names
from dumont_plan.cli.spot_view import reworded
from dumont_plan.errors import DumontError
from dumont_plan.wire_models.spot import SpotTemplate

template_app = typer.Typer(
    help="Spot templates: a snapshot of an instance's workspace, restored on every spot machine.",
    no_args_is_help=True,
)

COLUMNS = (
    "template_id",
    "instance_id",
    "region",
    "gpu_name",
    "size",
    "workspace_path",
    "created_at",
)


def size_text(size: int | None) -> str | None:
    """`512 B`, `1.5 KB`, `12.0 MB`, `1.2 GB`."""
    if size is None:
        return None
    value, unit = float(size), "B"
    for bigger in ("KB", "MB", "GB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"


def row(template: SpotTemplate) -> dict[str, object]:
    return {**template.raw, "size": size_text(template.size_bytes)}


@template_app.command(
    epilog=(
        "Snapshots the instance's workspace (--workspace-path, default /workspace) now; the "
        "instance keeps running. --region is where spot machines are rented (default: the "
        "instance's own).\n\n"
        "Examples:\n\n"
        "  dumont spot template create 12\n\n"
        "  dumont spot template create 12 --region=US"
    )
)
def create(
    ctx: typer.Context,
    instance_id: str = typer.Argument(
        ..., metavar="INSTANCE_ID", help="The instance to snapshot (see `dumont instance list`)."
    ),
    region: str | None = typer.Option(
        None, "--region", help="US, EU, a country code, global (default: the instance's)."
    ),
    workspace_path: str = typer.Option(
        "/workspace", "--workspace-path", help="The folder of the instance to snapshot."
    ),
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Make a template from an instance's workspace."""
    where = "spot template create"
    text = instance_id.strip()
    if not text.isdigit():
        raise DumontError(
            f"{where}: instance id {instance_id!r} is not a number",
            "use an id from `dumont instance list`",
        )
    if not workspace_path.startswith("/"):
        raise DumontError(
            f"{where}: --workspace-path {workspace_path!r} is not an absolute path",
            "e.g. --workspace-path=/workspace",
        )
    client = open_client(ctx)
    _, checked = resolve_names(client, where, region=region)
    with reworded(
        where,
        f"no instance {text}",
        "see yours with `dumont instance list`",
        f"check the instance with `dumont instance get {text}`",
    ):
        template = client.spot.create_template(
            int(text), region=checked, workspace_path=workspace_path
        )
    if output is OutputFormat.json:
        emit_json(template.raw)
        return
    details = [d for d in (template.gpu_name, template.region, size_text(template.size_bytes)) if d]
    console.print(
        f"Created template {template.template_id} from instance {text}"
        + (f" ({', '.join(details)})" if details else "")
        + ".",
        markup=False,
    )
    console.print(f"Deploy it: dumont spot deploy --template={template.template_id}", markup=False)


@template_app.command(
    "list",
    epilog="Examples:\n\n  dumont spot template list\n\n  dumont spot template list --output json",
)
def list_templates(ctx: typer.Context, output: OutputOpt = OutputFormat.table) -> None:
    """List your spot templates."""
    found = open_client(ctx).spot.templates()
    if output is OutputFormat.json:
        emit_json({"templates": [t.raw for t in found], "count": len(found)})
        return
    print_table((row(t) for t in found), COLUMNS)


@template_app.command(epilog="Examples:\n\n  dumont spot template delete spot_tpl_12_1733300000")
def delete(
    ctx: typer.Context,
    template_id: str = typer.Argument(
        ..., metavar="TEMPLATE_ID", help="Template id (see `dumont spot template list`)."
    ),
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Delete a template and its snapshot."""
    where = "spot template delete"
    text = template_id.strip()
    if not text:
        raise DumontError(f"{where}: the template id is empty", "see `dumont spot template list`")
    with reworded(
        where,
        f"no template {text}",
        "see yours with `dumont spot template list`",
        "see them with `dumont spot template list`",
    ):
        answer = open_client(ctx).spot.delete_template(text)
    if output is OutputFormat.json:
        emit_json(answer)
        return
    console.print(f"Deleted template {text}.", markup=False)
