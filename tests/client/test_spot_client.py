"""`client.spot` against the real local control plane: paths, read models, missing objects."""

from __future__ import annotations

import pytest

from dumont_plan.errors import NotFoundError
from dumont_plan.kinds.spot_deployment_ops import SpotDeploymentOps
from dumont_plan.kinds.spot_template_ops import SpotTemplateOps
from dumont_plan.offers import MARKET_FILTERS, MarketNames
from dumont_plan.server.provider.market import GPU_MODELS
from tests.server.spotfixtures import ONSTART, instance_gone, running_instance
from tests.support import LocalServer, UserSession


def test_market_offers_see_every_gpu_model_of_the_market(user: UserSession) -> None:
    names = MarketNames.of(user.client.spot.market_offers(MARKET_FILTERS))
    assert set(names.gpus) == set(GPU_MODELS)
    assert {"US", "EU", "ASIA"} <= set(names.regions)


def test_missing_objects_are_not_found_or_ignored(user: UserSession) -> None:
    spot = user.client.spot
    with pytest.raises(NotFoundError, match="spot template nope not found"):
        spot.template("nope")
    assert spot.delete_template("nope", missing_ok=True) is None
    assert spot.delete(123456, missing_ok=True) is None
    with pytest.raises(NotFoundError):
        spot.status(123456)
    with pytest.raises(NotFoundError, match="spot deployment spd_x not found"):
        SpotDeploymentOps().get(user.client, "spd_x")
    SpotDeploymentOps().delete(user.client, "spd_x")  # already gone: not an error
    SpotTemplateOps().delete(user.client, "spot_tpl_1_1")


@pytest.mark.slow
def test_a_deployment_keeps_its_identity_across_a_failover(
    server: LocalServer, user: UserSession
) -> None:
    with user.http() as http:
        source = int(running_instance(server, http, {"a.txt": "a"}, onstart_cmd=ONSTART)["id"])
    template = SpotTemplateOps().create(
        user.client, {"instance": source, "region": "US", "workspace_path": "/workspace"}, "k1"
    )
    assert template.instance_id == source and template.created_at  # read back from the list
    replayed = user.client.spot.create_template(source, region="US", idempotency_key="k1")
    assert replayed.template_id == template.template_id  # the same key: the first answer
    assert len(user.client.spot.templates()) == 1
    ops = SpotDeploymentOps()
    body = {"template": template.template_id, "max_price": 0.5, "gpu_preference": "rtx4090"}
    made = ops.create(user.client, body, "k2")
    assert made.deployment_id and made.state == "active" and made.gpu_name == "RTX 4090"
    assert made.gpu_preference == "RTX 4090"  # sent in the market's spelling
    assert ops.create(user.client, body, "k2").deployment_id == made.deployment_id
    assert len(user.client.spot.instances()) == 1  # a repeated key rents nothing more
    moved = user.client.spot.failover(made.instance_id)
    assert moved.old_instance_id == made.instance_id and moved.new_instance_id
    again = ops.get(user.client, made.identity)
    assert again.instance_id == int(str(moved.new_instance_id)) and again.failover_count == 1
    ops.delete(user.client, made.identity)
    assert user.client.spot.instances() == []
    with user.http() as http:
        assert instance_gone(http, int(str(moved.new_instance_id)))
    pricing = user.client.spot.pricing(region="US", gpu_name="RTX 4090")
    assert pricing.offers_count > 0 and pricing.top_offers[0].gpu_name == "RTX 4090"
    assert user.client.spot.comparison()["recommendation"] == "spot"
    user.client.spot.delete_template(template.template_id)
    user.client.instances.delete(source)
