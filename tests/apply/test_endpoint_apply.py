"""`serverless_endpoints:` end to end against a real local control plane: apply creates the
endpoint, a plan right after is empty, a new `max_instances` is an update in place (the same
id and URL), and destroy deletes it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.apply.applykit import Project
from tests.support import LocalServer, new_user

SPEC = """
version: 1
project: ep
serverless_endpoints:
  api:
    command: python3 -m http.server $PORT
    gpu: RTX 4090
    min_instances: 0
    max_instances: {high}
    idle_timeout_seconds: 30
"""


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    server = LocalServer(tmp_path_factory.mktemp("endpoint-plane")).start()
    yield server
    server.stop()


@pytest.mark.slow
def test_apply_update_in_place_and_destroy(plane: LocalServer, tmp_path: Path) -> None:
    user = new_user(plane.url)
    home = tmp_path / "home"
    home.mkdir()
    proj = Project(tmp_path / "work", home, user.url, user.token)

    proj.write(SPEC.format(high=2))
    plan = proj("plan").stdout
    assert "+ create serverless_endpoint.api" in plan, plan
    assert "0-2 workers" in plan
    assert "Apply complete" in proj("apply", "-y", timeout=180).stdout
    eid = proj.remote_id("serverless_endpoint.api")
    made = user.client.endpoints.get(eid)
    assert made["name"] == "ep-api" and made["command"] == "python3 -m http.server $PORT"
    assert made["auto_scaling"]["max_instances"] == 2
    assert made["idle_timeout_seconds"] == 30
    assert made["url"] == f"/api/v1/serverless/endpoints/{eid}/invoke/"
    proj("plan", "--detailed-exitcode")  # exit 0: nothing to change

    proj.write(SPEC.format(high=4))
    plan = proj("plan", "--detailed-exitcode", code=2).stdout
    assert "~ update serverless_endpoint.api" in plan, plan
    applied = proj("apply", "-y", timeout=180).stdout
    assert "Apply complete" in applied and "replace" not in applied
    assert proj.remote_id("serverless_endpoint.api") == eid
    assert user.client.endpoints.get(eid)["auto_scaling"]["max_instances"] == 4
    proj("plan", "--detailed-exitcode")

    proj("destroy", "-y", timeout=180)
    assert proj.state()["resources"] == {}
    assert user.client.endpoints.list() == []
