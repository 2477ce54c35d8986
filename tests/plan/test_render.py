"""Plan text and JSON (plan/render.py) from golden cases: symbols, fields, costs, summary."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from dumont_plan.kinds.registry import handler_for
from dumont_plan.plan.model import Plan
from dumont_plan.plan.render import plan_json, render_fields, render_plan, summary_line
from tests.plan.golden import CASES, load_case, run_case


def text_of(renderable: object) -> str:
    console = Console(width=200, no_color=True, record=True, force_terminal=False)
    console.print(renderable)
    return console.export_text()


def plan_of(name: str, tmp_path: Path) -> Plan:
    return run_case(load_case(CASES / f"{name}.yaml"), tmp_path)


def test_create_lines_show_their_price_and_the_summary(tmp_path: Path) -> None:
    text = text_of(render_plan(plan_of("create", tmp_path)))
    # Each create lists what it will send (what will run), below its header.
    assert [line for line in text.splitlines() if not line.startswith("      ")] == [
        "dumont will perform these actions (project lab):",
        "",
        "  + create instance.box  (RTX 4090, fast, global)  $0.40/h",
        "  + create job.train  (RTX 4090, spot)  $0.19/h, worst case $1.52",
        "",
        "Plan: 2 to create, 0 to run, 0 to change, 0 to destroy. "
        "Cost: +$0.59/h (worst case $1.52).",
    ]


def test_replace_names_the_forcing_field_old_and_new(tmp_path: Path) -> None:
    text = text_of(render_plan(plan_of("instance_replace_gpu", tmp_path)))
    assert "  -/+ replace instance.box  (forced by gpu_name)  $0.70/h" in text
    assert '      gpu_name: "RTX 4090" -> "A100"  # forces replacement' in text
    assert "Plan: 1 to create, 0 to run, 0 to change, 1 to destroy. Cost: +$0.28/h." in text


def test_every_symbol(tmp_path: Path) -> None:
    lines = {
        "run_on_change": "  > run job.train  (spec changed (command))  $0.20/h, worst case $0.20",
        "instance_pause": "  || pause instance.box  (state)  -$0.42/h",
        "instance_resume": "  |> resume instance.box  (state)  [drift: changed]  $0.42/h",
        "instance_update_label": "  ~ update instance.box  (label, models)",
        "delete_orphan": "  - delete instance.old  (not in the spec)  [drift: orphan]  -$0.50/h",
        "adopt": "  <= adopt job.train  (found on the server by name (lab-train, running))",
    }
    for name, line in lines.items():
        assert line in text_of(render_plan(plan_of(name, tmp_path))).splitlines(), name
    forget = text_of(render_plan(plan_of("delete_orphan", tmp_path)))
    assert "  x forget job.done  (not in the spec; completed, nothing to stop)" in forget


def test_changed_fields_and_drift_are_shown(tmp_path: Path) -> None:
    text = text_of(render_plan(plan_of("instance_resume", tmp_path)))
    assert '      state: "paused" -> "running"  # changed outside dumont' in text


def test_sensitive_fields_show_no_value(tmp_path: Path) -> None:
    plan = plan_of("sensitive", tmp_path)
    text = text_of(render_plan(plan))
    assert "      command: (sensitive) (changed)" in text
    assert "      hf_token: (sensitive) (changed)" in text
    dumped = json.dumps(plan_json(plan))
    for rendered in (text, dumped):
        assert "SECRET_MARKER" not in rendered
        assert "sha256:0000" not in rendered


def test_notes_of_unchanged_resources_are_shown(tmp_path: Path) -> None:
    text = text_of(render_plan(plan_of("noop_changed_once", tmp_path)))
    assert "  = job.train  (completed)" in text
    assert "      note: spec changed (command); run_policy once keeps the finished run" in text
    assert text.rstrip().endswith("No changes. The live state matches the spec.")


def test_summary_counts_adopt_and_forget_too(tmp_path: Path) -> None:
    assert summary_line(plan_of("delete_orphan", tmp_path)) == (
        "Plan: 0 to create, 0 to run, 0 to change, 2 to destroy, 1 to forget. Cost: -$0.50/h."
    )


def test_plan_json_is_versioned_and_carries_the_summary_line(tmp_path: Path) -> None:
    data = plan_json(plan_of("create", tmp_path))
    assert data["format_version"] == 1
    assert data["has_changes"] is True
    assert data["summary"]["line"].startswith("Plan: 2 to create")
    assert [c["action"] for c in data["changes"]] == ["create", "create"]
    assert json.loads(json.dumps(data)) == data


def test_explain_prints_the_field_table() -> None:
    text = text_of(render_fields(handler_for("instance")))
    assert "gpu_name" in text and "replace" in text and "a change replaces the resource" in text
    assert "pause / resume in place" in text


def test_a_destroy_with_nothing_managed_says_so(tmp_path: Path) -> None:
    plan = plan_of("noop_changed_once", tmp_path)
    assert not plan.has_changes
    plan.options["destroy"] = True
    assert summary_line(plan) == "No changes. Nothing is managed: there is nothing to destroy."


def test_explain_serverless_shows_updates_in_place_and_the_replacing_instance() -> None:
    text = text_of(render_fields(handler_for("serverless")))
    rows = {line.split()[0]: line for line in text.splitlines() if line.strip()}
    assert "replace" in rows["instance"] and "one policy per instance" in rows["instance"]
    for name in ("mode", "idle_timeout_seconds", "gpu_threshold", "keep_warm", "webhook"):
        assert "updatable" in rows[name], name
    assert "idle $/h against the running one" in rows["mode"]


def test_explain_serverless_endpoint_shows_scaling_in_place_and_the_workload_replacing() -> None:
    text = text_of(render_fields(handler_for("serverless_endpoints")))
    assert "serverless_endpoint (serverless_endpoints:)" in text
    rows = {line.split()[0]: line for line in text.splitlines() if line.strip()}
    for name in ("command", "image", "gpu", "machine_type"):
        assert "replace" in rows[name], name
    for name in ("min_instances", "max_instances", "idle_timeout_seconds", "concurrency"):
        assert "updatable" in rows[name], name
    assert "output" in rows["url"] and "${serverless_endpoint.NAME.url}" in rows["url"]


def test_explain_spot_kinds_say_what_a_failover_changes() -> None:
    text = text_of(render_fields(handler_for("spot_deployment")))
    assert "spot_deployment (spot_deployments:)" in text
    row = next(line for line in text.splitlines() if line.split()[:1] == ["instance_id"])
    assert "output" in row and "changes at each failover (not drift" in row
    template = text_of(render_fields(handler_for("spot_templates")))
    row = next(line for line in template.splitlines() if line.split()[:1] == ["instance"])
    assert "replace" in row and "a replaced instance makes a new template" in row


def test_a_failed_over_deployment_is_an_unchanged_line_with_its_note(tmp_path: Path) -> None:
    plan = plan_of("spot_failover_noop", tmp_path)
    assert not plan.has_changes
    assert text_of(render_plan(plan)).splitlines() == [
        "  = spot_deployment.worker  (failed over 2 times)",
        "      note: failed over 2 times; now on instance 377, last at 2026-01-05T11:58:00",
        "",
        "No changes. The live state matches the spec.",
    ]


def test_a_spot_create_line_shows_the_bid_beside_on_demand(tmp_path: Path) -> None:
    lines = text_of(render_plan(plan_of("spot_create", tmp_path))).splitlines()
    at = lines.index(
        "  + create spot_deployment.worker  (spot, RTX4090, bid at most $0.50/h, auto failover)"
        "  $0.19/h"
    )
    assert lines[at + 1] == (
        "      note: spot bid $0.190/h now (RTX 4090), worst case $0.50/h (max_price); "
        "on-demand $0.400/h (52% saved)"
    )


def test_explain_finetune_shows_its_dataset_hash_and_the_recorded_max_hours() -> None:
    text = text_of(render_fields(handler_for("finetunes")))
    rows = {line.split()[0]: line for line in text.splitlines() if line.strip()}
    assert "replace" in rows["dataset_sha256"] and "'dataset changed'" in rows["dataset_sha256"]
    for name in ("base_model", "dataset", "dataset_format", "config", "gpu_type", "num_gpus"):
        assert "replace" in rows[name], name
    assert "updatable" in rows["max_hours"] and "recorded only" in rows["max_hours"]
    assert "output" in rows["output_model_path"]
    assert "control" in rows["run_policy"]


def test_a_create_shows_what_will_run_and_hides_secrets(tmp_path: Path) -> None:
    plan = plan_of("sensitive_create", tmp_path)
    text = text_of(render_plan(plan))
    assert '      command: "python train.py"' in text
    assert '      image: "pytorch/pytorch:2.1.0-cuda12.1-cudnn8-runtime"' in text
    assert "      hf_token: (sensitive)" in text
    data = plan_json(plan)
    attributes = {c["address"]: c["attributes"] for c in data["changes"]}
    assert attributes["job.train"]["command"] == "python train.py"
    assert attributes["job.train"]["hf_token"] == "(sensitive)"
    assert attributes["job.fetch"]["command"] == "(sensitive)"  # it holds a secret
    assert "SECRET_MARKER" not in text and "SECRET_MARKER" not in json.dumps(data)
