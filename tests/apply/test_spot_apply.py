"""`spot_templates:` and `spot_deployments:` applied, interrupted and destroyed with the CLI,
against the real local control plane: a failover is not drift, and not a re-create."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.apply.applykit import Project
from tests.support import LocalServer, UserSession

SPEC = """
    version: 1
    project: spotty
    instances:
      devbox: {gpu_name: RTX 4090, max_price: 2.0}
    spot_templates:
      base: {instance: "${instance.devbox.id}", region: US}
    spot_deployments:
      worker: {template: "${spot_template.base.id}", max_price: 0.5, gpu_preference: RTX4090}
"""


@pytest.fixture
def proj(tmp_path: Path, user: UserSession) -> Project:
    home = tmp_path / "home"
    home.mkdir()
    project = Project(tmp_path / "work", home, user.url, user.token)
    project.write(SPEC)
    return project


@pytest.mark.slow
def test_apply_interrupt_failover_plan_stays_empty_then_destroy(
    proj: Project, user: UserSession, server: LocalServer
) -> None:
    planned = proj("plan").stdout
    assert "+ create spot_deployment.worker  (spot, RTX4090, bid at most $0.50/h" in planned
    assert (
        "note: spot bid $" in planned and "worst case $0.50/h (max_price); on-demand $" in planned
    )

    applied = proj("apply", "-y", timeout=180).stdout
    assert "Apply complete: 3 done" in applied, applied
    deployment_id = proj.remote_id("spot_deployment.worker")
    template_id = proj.remote_id("spot_template.base")
    (live,) = user.client.spot.instances()
    assert live.deployment_id == deployment_id and live.template_id == template_id
    assert live.state == "active" and live.gpu_name == "RTX 4090"
    assert user.client.spot.template(template_id).instance_id == int(
        proj.remote_id("instance.devbox")
    )
    assert "No changes." in proj("plan", "--detailed-exitcode").stdout

    # the market takes the machine back; the reconciler moves the deployment
    user.client.spot.interrupt(live.instance_id)
    server.reconcile()
    (moved,) = user.client.spot.instances()
    assert moved.deployment_id == deployment_id and moved.instance_id != live.instance_id
    assert moved.failover_count == 1 and moved.state == "active"

    plan = proj("plan", "--detailed-exitcode").stdout  # exit 0: nothing to do
    assert plan.splitlines() == [
        "  = spot_deployment.worker  (failed over 1 time)",
        f"      note: failed over 1 time; now on instance {moved.instance_id}, last at "
        f"{moved.last_failover_at}",
        "",
        "No changes. The live state matches the spec.",
    ]
    data = json.loads(proj("plan", "-o", "json").stdout)
    change = next(c for c in data["changes"] if c["address"] == "spot_deployment.worker")
    assert change["action"] == "noop" and change["drift"] is None
    assert change["remote_id"] == deployment_id
    assert proj.remote_id("spot_deployment.worker") == deployment_id
    assert "No changes." in proj("apply", "-y").stdout

    destroyed = proj("destroy", "-y", timeout=180).stdout
    assert "Destroy complete: 3 done" in destroyed, destroyed
    assert user.client.spot.instances() == []
    assert user.client.spot.templates() == []
    assert user.client.instances.list() == []
    assert proj.state()["resources"] == {}


@pytest.mark.slow
def test_a_changed_bid_replaces_the_deployment_and_keeps_the_template(
    proj: Project, user: UserSession
) -> None:
    proj("apply", "-y", timeout=180)
    before = proj.remote_id("spot_deployment.worker")
    template_id = proj.remote_id("spot_template.base")
    proj.write(SPEC.replace("max_price: 0.5", "max_price: 0.7"))
    planned = proj("plan").stdout
    assert "-/+ replace spot_deployment.worker  (forced by max_price)" in planned
    assert "max_price: 0.5 -> 0.7  # forces replacement" in planned
    assert "spot_template.base" not in planned.split("Plan:")[0]
    proj("apply", "-y", timeout=180)
    (live,) = user.client.spot.instances()
    assert live.deployment_id != before and live.max_price == 0.7
    assert proj.remote_id("spot_template.base") == template_id
    proj("destroy", "-y", timeout=180)
    assert user.client.spot.instances() == [] and user.client.instances.list() == []


@pytest.mark.slow
def test_a_lost_deploy_answer_is_replayed_not_rented_twice(
    proj: Project, user: UserSession, server: LocalServer
) -> None:
    """The control plane deploys but the answer is lost (a broken connection): the apply fails
    that change, and the next one resends the same Idempotency-Key, so the server answers the
    deployment it made instead of renting a second machine."""
    drop = {"status": 0, "count": 1, "method": "POST", "path": "/api/v1/spot/deploy"}
    assert httpx.post(f"{server.url}/api/v1/_local/faults", json=drop).status_code == 200
    first = proj("apply", "-y", code=3, timeout=180)
    assert "spot_deployment.worker" in first.stdout + first.stderr
    (made,) = user.client.spot.instances()  # deployed, but the ledger does not know it
    assert "spot_deployment.worker" not in proj.state()["resources"]
    again = proj("apply", "-y", timeout=180).stdout
    assert "Apply complete" in again, again
    (live,) = user.client.spot.instances()
    assert live.deployment_id == made.deployment_id
    assert proj.remote_id("spot_deployment.worker") == made.deployment_id
    assert "No changes." in proj("plan", "--detailed-exitcode").stdout
    proj("destroy", "-y", timeout=180)
    assert user.client.spot.instances() == [] and user.client.instances.list() == []
