"""Rich renderables for plans, the state and field tables, plus their JSON forms. Never decides.

    console.print(render_plan(plan))
      + create job.train  (RTX 4090, spot)  $0.19/h, worst case $1.52
      -/+ replace instance.box  (forced by gpu_name)  $0.70/h
          gpu_name: "RTX 4090" -> "A100"  # forces replacement
      ...
    Plan: 2 to create, 1 to run, 0 to change, 1 to destroy. Cost: +$0.74/h (worst case $5.92).

Colour comes from rich, which drops it when NO_COLOR is set or the output is not a terminal.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from dumont_plan.kinds.base import CLASS_HELP, RegisteredHandler
from dumont_plan.plan.model import (
    SENSITIVE,
    SYMBOLS,
    UNKNOWN,
    Action,
    FieldChange,
    Plan,
    ResourceChange,
)

MAX_VALUE = 80
STYLES: dict[Action, str] = {
    Action.create: "green",
    Action.update: "yellow",
    Action.replace: "magenta",
    Action.delete: "red",
    Action.run: "cyan",
    Action.pause: "yellow",
    Action.resume: "green",
    Action.noop: "dim",
    Action.adopt: "blue",
    Action.forget: "red",
}
WORDS: dict[Action, str] = {
    Action.create: "create",
    Action.update: "update",
    Action.replace: "replace",
    Action.delete: "delete",
    Action.run: "run",
    Action.pause: "pause",
    Action.resume: "resume",
    Action.noop: "no-op",
    Action.adopt: "adopt",
    Action.forget: "forget",
}


def money(value: float) -> str:
    return f"${value:,.2f}"


def show_value(value: Any) -> str:
    """A field value as the plan shows it: JSON-ish, short."""
    if value == UNKNOWN:
        return UNKNOWN
    text = json.dumps(value, default=str, ensure_ascii=False)
    if len(text) > MAX_VALUE:
        text = text[: MAX_VALUE - 3] + "..."
    return text


def field_line(change: FieldChange, action: Action = Action.update) -> Text:
    line = Text("      ")
    line.append(change.field)
    line.append(": ")
    if change.sensitive:
        line.append(SENSITIVE)
        line.append(" (changed)", style="dim")
    else:
        line.append(show_value(change.old), style="red")
        line.append(" -> ")
        line.append(show_value(change.new), style="green")
    if change.forces_replace and action is Action.replace:
        line.append("  # forces replacement", style="magenta")
    if change.drift:
        line.append("  # changed outside dumont", style="yellow")
    return line


def cost_text(change: ResourceChange) -> str:
    parts = []
    if change.hourly_cost is not None and change.action in (
        Action.create,
        Action.replace,
        Action.run,
        Action.resume,
    ):
        parts.append(f"{money(change.hourly_cost)}/h")
        if change.worst_case_cost is not None:
            parts.append(f"worst case {money(change.worst_case_cost)}")
    if change.hourly_saving:
        parts.append(f"-{money(change.hourly_saving)}/h")
    return ", ".join(parts)


def change_header(change: ResourceChange) -> Text:
    style = STYLES[change.action]
    line = Text("  ")
    line.append(f"{SYMBOLS[change.action]} {WORDS[change.action]}", style=style)
    line.append(" ")
    line.append(change.address, style="bold")
    reason = change.reason
    if change.action is Action.replace and change.forced_by and not reason.startswith("forced"):
        reason = f"forced by {', '.join(change.forced_by)}; {reason}"
    if reason:
        line.append(f"  ({reason})", style="dim")
    if change.drift and change.action is not Action.noop:
        line.append(f"  [drift: {change.drift}]", style="yellow")
    cost = cost_text(change)
    if cost:
        line.append(f"  {cost}")
    return line


def change_lines(change: ResourceChange) -> list[Text]:
    lines = [change_header(change)]
    if change.action is not Action.create:
        lines.extend(field_line(f, change.action) for f in change.changes)
    for note in change.notes:
        lines.append(Text(f"      note: {note}", style="dim"))
    for name, value in change.attributes.items() if change.action is Action.create else ():
        line = Text(f"      {name}: ")
        line.append(value if value == SENSITIVE else show_value(value), style="green")
        lines.append(line)
    return lines


def counts(plan: Plan) -> dict[str, int]:
    """Terraform-style counts: a replace is one create and one destroy."""
    out = {"create": 0, "run": 0, "change": 0, "destroy": 0, "adopt": 0, "forget": 0}
    for change in plan.changes:
        action = change.action
        if action in (Action.create, Action.replace):
            out["create"] += 1
        if action in (Action.delete, Action.replace):
            out["destroy"] += 1
        if action is Action.run:
            out["run"] += 1
        if action in (Action.update, Action.pause, Action.resume):
            out["change"] += 1
        if action is Action.adopt:
            out["adopt"] += 1
        if action is Action.forget:
            out["forget"] += 1
    return out


def summary_line(plan: Plan) -> str:
    blocked = len(plan.blocked)
    if not plan.has_changes:
        if blocked:
            return (
                f"No changes can be made: {blocked} blocked by a failed run they depend on "
                "(see the notes)."
            )
        if plan.options.get("destroy"):
            return "No changes. Nothing is managed: there is nothing to destroy."
        return "No changes. The live state matches the spec."
    n = counts(plan)
    text = (
        f"Plan: {n['create']} to create, {n['run']} to run, {n['change']} to change, "
        f"{n['destroy']} to destroy."
    )
    extra = [f"{n[k]} to {k}" for k in ("adopt", "forget") if n[k]]
    if extra:
        text = text[:-1] + ", " + ", ".join(extra) + "."
    delta = plan.summary.hourly_delta
    sign = "+" if delta >= 0 else "-"
    text += f" Cost: {sign}{money(abs(delta))}/h"
    if plan.summary.worst_case_cost:
        text += f" (worst case {money(plan.summary.worst_case_cost)})"
    if plan.summary.unpriced:
        text += f", {len(plan.summary.unpriced)} unpriced"
    if blocked:
        text += f"; {blocked} blocked by a failed run"
    return text + "."


def render_plan(plan: Plan) -> RenderableType:
    """The plan for people: each change, its fields, notes, warnings and the summary line."""
    parts: list[RenderableType] = []
    actionable = plan.actionable()
    if actionable:
        parts.append(Text(f"dumont will perform these actions (project {plan.project}):"))
        parts.append(Text(""))
        for change in actionable:
            parts.extend(change_lines(change))
        parts.append(Text(""))
    quiet = [c for c in plan.changes if c.action is Action.noop and (c.notes or c.drift)]
    for change in quiet:
        drift = f" [drift: {change.drift}]" if change.drift else ""
        parts.append(Text(f"  = {change.address}  ({change.reason}){drift}", style="dim"))
        for note in change.notes:
            parts.append(Text(f"      note: {note}", style="dim"))
    if quiet:
        parts.append(Text(""))
    for warning in plan.warnings:
        parts.append(Text(f"Warning: {warning}", style="yellow"))
    parts.append(Text(summary_line(plan), style="bold"))
    return Group(*parts)


def plan_json(plan: Plan) -> dict[str, Any]:
    """The machine form (`--output json`, `-out`): the versioned Plan model."""
    data = plan.model_dump(mode="json")
    data["summary"]["line"] = summary_line(plan)
    data["has_changes"] = plan.has_changes
    return data


def render_fields(handler: RegisteredHandler) -> RenderableType:
    """`dumont explain KIND`: every field, its class and what a change does."""
    table = Table(
        title=f"{handler.kind} ({handler.section}:)", show_edge=False, header_style="bold"
    )
    table.add_column("FIELD")
    table.add_column("CLASS")
    table.add_column("ON CHANGE")
    for name, cls in handler.fields.items():
        words = CLASS_HELP[cls]
        if name in handler.unordered:
            words += "; order does not matter"
        note = handler.notes.get(name)
        if note:
            words += f"; {note}"
        table.add_row(name, cls.value, words)
    return table


def state_rows(entries: Mapping[str, Any], live_status: Mapping[str, str]) -> list[dict[str, Any]]:
    """Rows of `dumont show` (no plan file): one per ledger address."""
    rows = []
    for address, entry in sorted(entries.items()):
        rows.append(
            {
                "address": address,
                "remote_id": entry.remote_id,
                "remote_name": entry.remote_name,
                "status": live_status.get(address, "gone"),
                "runs": entry.run_count,
                "updated_at": entry.updated_at,
            }
        )
    return rows


def render_rows(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> RenderableType:
    if not rows:
        return Text("(none)")
    table = Table(show_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column.upper().replace("_", " "))
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    return table
