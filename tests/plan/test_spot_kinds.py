"""The spot kinds' pure pieces: prices, statuses, identity; the market's names (did-you-mean)."""

from __future__ import annotations

import pytest

from dumont_plan.errors import DumontError
from dumont_plan.kinds.registry import handler_for
from dumont_plan.kinds.spot_deployment import SpotDeploymentHandler
from dumont_plan.kinds.spot_template import SpotTemplateHandler
from dumont_plan.offers import MarketNames, compact
from dumont_plan.wire_models import Offer
from dumont_plan.wire_models.spot import SpotInstance, SpotTemplate

FAST = {"num_gpus": 1, "inet_down": 500.0, "disk_space": 100.0}
OFFERS = [
    Offer(id=1, gpu_name="RTX 4090", dph_total=0.40, min_bid=0.20, **FAST),
    Offer(id=2, gpu_name="RTX 4090", dph_total=0.35, min_bid=0.15, num_gpus=2, inet_down=500),
    Offer(id=3, gpu_name="RTX 4090", dph_total=0.30, min_bid=0.12, num_gpus=1, inet_down=50),
    Offer(id=4, gpu_name="RTX 4090", dph_total=0.30, min_bid=0.11, num_gpus=1, disk_space=10),
    Offer(id=5, gpu_name="RTX 3060", dph_total=0.08, min_bid=0.04, **FAST),
    Offer(id=6, gpu_name="H100", dph_total=1.20, min_bid=0.70, **FAST),
    # the same machine as offer 1, read by a spot search: dph_total is then its spot price
    Offer(id=1, gpu_name="RTX 4090", dph_total=0.20, min_bid=0.20, **FAST),
]


def spot(**fields: object) -> SpotInstance:
    return SpotInstance.model_validate({"instance_id": 205, **fields})


def test_the_bid_is_the_lowest_min_bid_that_the_deploy_filters_keep() -> None:
    handler = SpotDeploymentHandler()
    # 2 has two GPUs, 3 a slow network, 4 a small disk: the deploy would not take them
    assert handler.hourly_price({"gpu_preference": "RTX4090", "max_price": 1.0}, OFFERS) == 0.20
    assert handler.hourly_price({"max_price": 1.0}, OFFERS) == 0.04
    assert handler.hourly_price({"gpu_preference": "h100", "max_price": 0.5}, OFFERS) is None
    assert handler.hourly_price({"gpu_preference": "A100", "max_price": 5}, OFFERS) is None


def test_the_cost_note_compares_the_bid_with_on_demand_and_the_worst_case() -> None:
    handler = SpotDeploymentHandler()
    notes = handler.cost_notes({"gpu_preference": "rtx 4090", "max_price": 0.5}, OFFERS)
    assert notes == [
        "spot bid $0.200/h now (RTX 4090), worst case $0.50/h (max_price); "
        "on-demand $0.400/h (50% saved)"
    ]
    assert handler.cost_notes({"gpu_preference": "H100", "max_price": 0.5}, OFFERS) == []


def test_a_deployment_is_named_by_its_id_not_its_instance() -> None:
    handler = SpotDeploymentHandler()
    assert handler.live_id(spot(deployment_id="spd_1")) == "spd_1"
    assert handler.live_id(spot()) == "205"  # a server without deployment ids
    outputs = handler.outputs(spot(deployment_id="spd_1", ssh_host="127.0.0.1"))
    assert outputs["id"] == "spd_1" and outputs["instance_id"] == 205
    assert outputs["ssh_host"] == "127.0.0.1"
    view = handler.observed_view(spot(deployment_id="spd_1", template_id="t", max_price=0.5))
    assert "instance_id" not in view and view["id"] == "spd_1"


def test_spot_states_for_waits_failures_and_cost() -> None:
    handler = SpotDeploymentHandler()
    active = spot(state="active", bid_price=0.2)
    assert handler.wait_done(active, "active") and handler.wait_done(active, "completed")
    assert not handler.wait_done(spot(state="failover"), "active")
    booting = spot(state="active", instance_status="loading")
    assert not booting.is_ready and not handler.wait_done(booting, "active")
    assert handler.wait_done(spot(state="active", instance_status="running"), "active")
    assert handler.wait_done(spot(state="failover"), "none")
    assert handler.is_failed(spot(state="failed")) and not handler.is_failed(active)
    assert handler.status(spot()) == "unknown"
    assert handler.live_hourly(active) == 0.2
    assert handler.live_hourly(spot(state="stopped", bid_price=0.2)) is None
    assert handler.live_hourly(spot(state="failed", bid_price=0.2)) is None
    assert handler.wait_target({}) == "active" and handler.wait_target({"wait": "none"}) == "none"


def test_template_values_compare_as_the_server_echoes_them() -> None:
    handler = handler_for("spot_templates")
    assert isinstance(handler, SpotTemplateHandler)
    live = SpotTemplate.model_validate(
        {"template_id": "spot_tpl_12_1", "instance_id": 12, "region": "US", "workspace_path": "/w"}
    )
    assert handler.live_id(live) == "spot_tpl_12_1" and handler.status(live) == "ready"
    assert handler.live_values(live) == {"instance": 12, "region": "US", "workspace_path": "/w"}
    assert handler.normalize("instance", 12) == handler.normalize("instance", "12")
    assert handler.normalize("region", " us ") == handler.normalize("region", "US")
    assert handler.price_query({"instance": 12}) is None
    assert handler.hourly_price({"instance": 12}, OFFERS) == 0.0  # a stored snapshot


MARKET = MarketNames.of(
    [
        Offer.model_validate({"id": 1, "gpu_name": "RTX 4090", "geolocation": "Texas, US"}),
        Offer.model_validate({"id": 2, "gpu_name": "A100", "geolocation": "Germany, DE"}),
        Offer.model_validate(
            {"id": 3, "gpu_name": "A100 80GB", "geolocation": "Japan, JP", "region": "ASIA"}
        ),
    ]
)


def test_gpu_names_match_the_market_whatever_the_spacing() -> None:
    assert compact("RTX-4090") == compact("rtx 4090") == "rtx4090"
    assert MARKET.gpu("RTX4090", "spot deploy") == "RTX 4090"
    assert MARKET.gpu("a100 80gb", "spot deploy") == "A100 80GB"
    with pytest.raises(DumontError) as caught:
        MARKET.gpu("RTX4009", "spot deploy")
    assert str(caught.value) == (
        "spot deploy: GPU 'RTX4009' is not on the spot market; did you mean 'RTX 4090'?"
    )
    with pytest.raises(DumontError, match="use one of: A100, A100 80GB, RTX 4090"):
        MARKET.gpu("Voodoo", "spot pricing")
    assert MarketNames().gpu("RTX4090", "x") == "RTX4090"  # no market: as typed


def test_regions_are_checked_against_the_places_of_the_offers() -> None:
    for word in ("US", "us", "global", "EU", "europe", "ASIA", "DE", "Texas", "japan"):
        assert MARKET.region(word, "spot pricing") == word
    with pytest.raises(DumontError) as caught:
        MARKET.region("EUR", "spot pricing")
    assert str(caught.value) == (
        "spot pricing: no offer of the market is in region 'EUR'; did you mean 'EU'?"
    )
    with pytest.raises(DumontError, match="the region is empty"):
        MARKET.region(" ", "spot template create")
