"""Kinds' own pieces: the registry, the injected model installer, prices, statuses, names."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from dumont_plan.errors import ApplyError, PlanError
from dumont_plan.kinds.instance_ops import InstanceOps
from dumont_plan.kinds.ops import KindServices, load_ops
from dumont_plan.kinds.registry import HANDLERS, REGISTRY, handler_for
from dumont_plan.plan.model import Observed
from dumont_plan.wire_models import Finetune, Instance, Job, Offer, ServerlessPolicy

OFFERS = [
    Offer(id=1, gpu_name="RTX 4090", num_gpus=1, dph_total=0.4, min_bid=0.2),
    Offer(id=2, gpu_name="RTX 4090", num_gpus=1, dph_total=0.3, min_bid=0.25),
    Offer(id=3, gpu_name="RTX 4090", num_gpus=2, dph_total=0.5, min_bid=0.1),
]


def test_every_registered_kind_has_ops_of_the_same_kind() -> None:
    ops = load_ops()
    kinds = [
        "job",
        "instance",
        "serverless",
        "spot_template",
        "spot_deployment",
        "finetune",
        "serverless_endpoint",
    ]
    assert sorted(ops) == sorted(HANDLERS) == sorted(kinds)
    assert [entry.handler.kind for entry in REGISTRY] == kinds
    assert all(ops[kind].kind == kind for kind in ops)


def test_the_model_installer_is_injected_and_called_per_model() -> None:
    calls: list[tuple[Any, Any, str]] = []

    def install(client: Any, live: Instance, model: str) -> None:
        calls.append((client, live.id, model))

    without = load_ops()["instance"]
    assert isinstance(without, InstanceOps)
    with pytest.raises(ApplyError, match="run `dumont model install 7 MODEL`"):
        without.install_models(None, Instance(id=7), ["llama3"])  # type: ignore[arg-type]
    ops = load_ops(KindServices(model_installer=install))["instance"]
    assert isinstance(ops, InstanceOps)
    ops.install_models("client", Instance(id=7), ["llama3", "mistral"])  # type: ignore[arg-type]
    assert calls == [("client", 7, "llama3"), ("client", 7, "mistral")]
    fresh = load_ops()["instance"]  # the installer was given to one apply's ops, not a class
    assert isinstance(fresh, InstanceOps) and fresh.model_installer is None


def test_job_prices_spot_min_bid_or_on_demand_of_the_same_gpu_count() -> None:
    job = HANDLERS["job"]
    spec = {"gpu_type": "rtx 4090", "num_gpus": 1}
    assert job.hourly_price({**spec, "use_spot": True}, OFFERS) == 0.2
    assert job.hourly_price({**spec, "use_spot": False}, OFFERS) == 0.3
    assert job.hourly_price({**spec, "num_gpus": 2, "use_spot": True}, OFFERS) == 0.1
    assert job.hourly_price({"gpu_type": "H100", "num_gpus": 1}, OFFERS) is None
    assert job.max_hours({"timeout_minutes": 90}) == 1.5


def test_instance_status_paused_is_not_failed() -> None:
    box = HANDLERS["instance"]
    paused = Instance(id=1, status="stopped", actual_status="exited", dph_total=0.4)
    dead = Instance(id=1, status="running", actual_status="exited", dph_total=0.4)
    assert (box.status(paused), box.is_failed(paused)) == ("paused", False)
    assert (box.status(dead), box.is_failed(dead)) == ("exited", True)
    assert box.live_hourly(paused) is None
    assert box.live_price(paused) == 0.4
    assert box.live_hourly(dead) == 0.4
    # a job runs to an end (wait: completed, --allow-restart); an instance runs until deleted
    assert (HANDLERS["job"].runs_to_completion, box.runs_to_completion) == (True, False)


def test_names_on_the_server() -> None:
    assert HANDLERS["job"].remote_name("lab", "train", {}) == "lab-train"
    assert HANDLERS["instance"].remote_name("lab", "box", {"label": "mine"}) == "mine"
    assert HANDLERS["instance"].remote_name("lab", "box", {"label": None}) == "lab-box"
    assert handler_for("jobs") is HANDLERS["job"]
    with pytest.raises(PlanError, match="unknown kind 'gpu'; use one of: finetune, instance, job"):
        handler_for("gpu")


def test_observed_holds_read_models_and_refuses_raw_json() -> None:
    job = Job(id="job_1", status="running")
    assert Observed(live={"job": [job]}).objects("job") == [job]
    with pytest.raises(ValidationError, match="instance of WireModel"):
        Observed(live={"job": [{"id": "job_1", "status": "running"}]})
    with pytest.raises(ValidationError, match="instance of Offer"):
        Observed(offers=[{"id": 1, "dph_total": 0.3}])


def test_serverless_policy_costs_nothing_and_notes_its_modes_idle_rate() -> None:
    policy = HANDLERS["serverless"]
    assert policy.hourly_price({"mode": "fast"}, OFFERS) == 0.0
    assert policy.cost_effect({"mode": "fast"}, 0.45) == "fast: idle $0.01/h vs $0.45/h running"
    assert policy.cost_effect({"mode": "spot"}, None) == (
        "spot: idle $0.005/h while paused (the machine is released while paused; a wake bids "
        "at the spot price)"
    )
    assert policy.cost_effect({"mode": "economic", "keep_warm": True}, 0.3) == (
        "economic, kept warm: never paused, $0.30/h running"
    )
    assert policy.describe({"mode": "economic", "idle_timeout_seconds": 30, "gpu_threshold": 5})
    assert policy.governs == ("instance", "instance")
    assert HANDLERS["job"].governs is None and HANDLERS["job"].cost_effect({}, 1.0) is None


def test_serverless_status_and_echo_from_the_live_policy() -> None:
    policy = HANDLERS["serverless"]
    paused = ServerlessPolicy(instance_id=7, mode="fast", is_paused=True, idle_timeout_seconds=30)
    idle = ServerlessPolicy(instance_id=8, mode="spot", idle_since="2026-01-05T12:00:00")
    busy = ServerlessPolicy(instance_id=9, mode="economic", gpu_threshold=5, keep_warm=False)
    assert [policy.status(p) for p in (paused, idle, busy)] == ["paused", "idle", "active"]
    assert not any(policy.is_failed(p) for p in (paused, idle, busy))
    assert policy.live_id(paused) == "7" and policy.live_name(paused) is None
    # Only what the server sent is compared: the real platform echoes two of the four.
    assert policy.live_values(paused) == {"mode": "fast", "idle_timeout_seconds": 30}
    echoed = {"mode": "economic", "gpu_threshold": 5.0, "keep_warm": False}
    assert policy.live_values(busy) == echoed
    assert policy.outputs(paused)["id"] == 7
    assert policy.live_hourly(paused) is None


def test_serverless_request_body_is_the_enable_body() -> None:
    policy = HANDLERS["serverless"]
    values = {
        "instance": 12,
        "mode": "economic",
        "idle_timeout_seconds": 30,
        "gpu_threshold": 5.0,
        "keep_warm": False,
        "webhook": {"url": "https://example.org/hook", "secret": "s3cret"},
    }
    assert policy.request_body("lab", "box", values) == {
        "instance_id": 12,
        "mode": "economic",
        "idle_timeout_seconds": 30,
        "gpu_threshold": 5.0,
        "keep_warm": False,
        "webhook_url": "https://example.org/hook",
        "webhook_secret": "s3cret",
    }
    assert "webhook_url" not in policy.request_body("lab", "box", {**values, "webhook": None})


def test_finetune_prices_the_cheapest_on_demand_offer_of_its_gpu_times_max_hours() -> None:
    handler = HANDLERS["finetune"]
    offers = [
        Offer(id=1, gpu_name="A100 80GB", num_gpus=1, dph_total=0.9, min_bid=0.3),
        Offer(id=2, gpu_name="A100 80GB", num_gpus=1, dph_total=0.8),
        Offer(id=3, gpu_name="A100", num_gpus=1, dph_total=0.5),
        Offer(id=4, gpu_name="A100 80GB", num_gpus=2, dph_total=1.5),
    ]
    values = {"gpu_type": "A100-80GB", "num_gpus": 1, "max_hours": 3}
    assert handler.hourly_price(values, offers) == 0.8
    assert handler.hourly_price({**values, "num_gpus": 2}, offers) == 1.5
    assert handler.hourly_price({**values, "gpu_type": "H100"}, offers) is None
    assert handler.max_hours(values) == 3.0
    assert handler.price_query(values)["gpu_name"] == "A100-80GB"


def test_finetune_status_predicates_and_waits() -> None:
    handler = HANDLERS["finetune"]
    running = Finetune(id="ft_1", status="running")
    completed = Finetune(id="ft_1", status="completed", output_model_path="/o/ft_1")
    cancelled = Finetune(id="ft_1", status="cancelled")
    assert not handler.is_finished(running) and handler.needs_delete(running)
    assert handler.is_finished(completed) and not handler.is_failed(completed)
    assert handler.is_failed(cancelled) and not handler.needs_delete(cancelled)
    assert handler.wait_done(running, "running") and not handler.wait_done(running, "completed")
    assert handler.wait_done(completed, "completed")
    assert handler.outputs(completed)["output_model_path"] == "/o/ft_1"
    assert handler.is_failed(Finetune(id="ft_2")) is False  # a missing status is `unknown`


def test_finetune_request_body_nests_the_config_and_marks_a_local_file() -> None:
    handler = HANDLERS["finetune"]
    values = {
        "base_model": "m",
        "dataset": "data/train.jsonl",
        "dataset_sha256": "ab" * 32,
        "dataset_format": "alpaca",
        "config": {"epochs": 2, "lora_rank": None},
        "preset": None,
        "gpu_type": "A100",
        "num_gpus": 1,
        "max_hours": 4,
    }
    assert handler.request_body("lab", "chat", values) == {
        "name": "lab-chat",
        "base_model": "m",
        "dataset_source": "upload",
        "dataset_path": "data/train.jsonl",
        "dataset_format": "alpaca",
        "gpu_type": "A100",
        "num_gpus": 1,
        "config": {"epochs": 2},
        "dataset_sha256": "ab" * 32,
    }
    hub = {**values, "dataset": "hf:org/set", "dataset_sha256": None}
    body = handler.request_body("lab", "chat", hub)
    assert (body["dataset_source"], body["dataset_path"]) == ("huggingface", "org/set")
    assert "dataset_sha256" not in body and "max_hours" not in body


def test_serverless_endpoint_costs_its_floor_and_notes_its_worst_case() -> None:
    endpoint = HANDLERS["serverless_endpoint"]
    offers = [
        Offer(id=1, gpu_name="RTX 4090", num_gpus=1, dph_total=0.40, min_bid=0.20),
        Offer(id=2, gpu_name="A100", num_gpus=1, dph_total=1.50, min_bid=0.90),
    ]
    spot = {"gpu": "RTX 4090", "machine_type": "spot", "min_instances": 2, "max_instances": 5}
    assert endpoint.hourly_price(spot, offers) == pytest.approx(0.40)
    assert endpoint.cost_notes(spot, offers) == ["worst case $1.00/h at 5 workers ($0.20/h each)"]
    on_demand = {**spot, "machine_type": "on-demand", "min_instances": 0}
    assert endpoint.hourly_price(on_demand, offers) == 0.0
    assert endpoint.cost_notes(on_demand, offers)[0].startswith("worst case $2.00/h")
    assert endpoint.hourly_price({**spot, "gpu": "H100"}, offers) is None


def test_serverless_endpoint_outputs_its_id_and_url() -> None:
    endpoint = HANDLERS["serverless_endpoint"]
    live = endpoint.live_model.from_wire(
        {
            "id": "ep-1",
            "name": "lab-api",
            "status": "running",
            "url": "/api/v1/serverless/endpoints/ep-1/invoke/",
            "auto_scaling": {"min_instances": 0, "max_instances": 3},
        },
        "test",
    )
    outputs = endpoint.outputs(live)
    assert outputs["id"] == "ep-1"
    assert outputs["url"] == "/api/v1/serverless/endpoints/ep-1/invoke/"
    assert endpoint.live_values(live) == {"min_instances": 0, "max_instances": 3}
