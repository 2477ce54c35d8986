"""`dumont spot …` end to end against the real control plane (a subprocess per command)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from dumont_plan.wire_models.spot import SpotInstance
from tests.cli.instancekit import Cli, ok
from tests.server.spotfixtures import (
    ONSTART,
    instance_gone,
    read_file,
    running_instance,
    write_files,
)
from tests.support import OPEN_CLIENTS, LocalServer, UserSession, cli_env, new_user, run_cli


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one `Error: …` line of a refused command, exit 1, nothing on stdout."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# ----------------------------------------------------------------------------- bad input

BAD_INPUT = [
    (
        ["spot", "status", "abc"],
        "Error: spot status: instance id 'abc' is not a number; use an id from `dumont spot list`",
    ),
    (
        ["spot", "failover", "1.5"],
        "Error: spot failover: instance id '1.5' is not a number; use an id from "
        "`dumont spot list`",
    ),
    (
        ["spot", "deploy", "--template=spot_tpl_1_1", "--max-price=20"],
        "Error: spot deploy: --max-price 20 is out of range; use 0.01-10 ($/h)",
    ),
    (
        ["spot", "deploy", "--template=spot_tpl_1_1", "--gpu=RTX4009"],
        "Error: spot deploy: GPU 'RTX4009' is not on the spot market; did you mean 'RTX 4090'?",
    ),
    (
        ["spot", "deploy", "--template=spot_tpl_1_1"],
        "Error: spot deploy: no template spot_tpl_1_1 (or it is not yours); see yours with "
        "`dumont spot template list`",
    ),
    (
        ["spot", "template", "delete", "spot_tpl_1_1"],
        "Error: spot template delete: no template spot_tpl_1_1 (or it is not yours); see yours "
        "with `dumont spot template list`",
    ),
    (
        ["spot", "pricing", "--region=EUR"],
        "Error: spot pricing: no offer of the market is in region 'EUR'; did you mean 'EU'?",
    ),
    (
        ["spot", "pricing", "--gpu=h10"],
        "Error: spot pricing: GPU 'h10' is not on the spot market; did you mean 'H100'?",
    ),
    (
        ["spot", "template", "create", "box"],
        "Error: spot template create: instance id 'box' is not a number; use an id from "
        "`dumont instance list`",
    ),
    (
        ["spot", "template", "create", "12", "--workspace-path=data"],
        "Error: spot template create: --workspace-path 'data' is not an absolute path; "
        "e.g. --workspace-path=/workspace",
    ),
    (
        ["spot", "template", "create", "12", "--region=Atlantis"],
        "Error: spot template create: no offer of the market is in region 'Atlantis'; use one "
        "of: global, any, all, AF, AS, ASIA, AU, BR, CA, DE, EU, FR, IN, JP, KR, NA, NL, OC, "
        "PL, SA, SE, SG, US",
    ),
]


@pytest.mark.parametrize(
    "args,line", BAD_INPUT, ids=lambda v: "-".join(v)[:40] if isinstance(v, list) else ""
)
def test_bad_input_is_one_line_and_exit_1(run: Cli, args: list[str], line: str) -> None:
    assert error_line(run(*args)) == line


def test_an_unknown_spot_instance_is_named_with_the_next_step(run: Cli) -> None:
    assert error_line(run("spot", "status", "999999")) == (
        "Error: spot status: no spot instance 999999 (or it is not yours); "
        "see yours with `dumont spot list`"
    )


def test_dashboard_prints_the_control_plane_page(run: Cli, user: UserSession) -> None:
    result = ok(run("spot", "dashboard", "--open"))  # not a terminal: no browser
    assert result.stdout == f"{user.url}/dashboard\n"
    assert "not a terminal" in result.stderr
    page = httpx.get(result.stdout.strip(), timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")


# ----------------------------------------------------------------------------- the sprint's list


@dataclass
class SpotWorld:
    """One user of the session server with a running instance (a workspace holding `FILES`)
    and a template made from it, shared by the tests of this module."""

    server: LocalServer
    user: UserSession
    home: Path
    source: int
    template: str

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(list(args), cli_env(self.home, self.user.url, self.user.token))

    def json(self, *args: str) -> Any:
        return json.loads(ok(self.cli(*args, "--output", "json")).stdout)

    def deploy(self, **body: Any) -> SpotInstance:
        """A deployment whose machine has booted (a workspace syncs only from a running one)."""
        deployed = self.user.client.spot.deploy(self.template, **body)
        deadline = time.monotonic() + 60
        while not self.user.client.instances.get(deployed.instance_id).is_running:
            assert time.monotonic() < deadline, f"instance {deployed.instance_id} never ran"
            time.sleep(0.05)
        return self.user.client.spot.status(deployed.instance_id)


FILES = {"notes.txt": "written before the template\n", "data/weights.bin": "0123456789" * 100}


@pytest.fixture(scope="module")
def world(server: LocalServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpotWorld]:
    user = new_user(server.url, "spot")
    OPEN_CLIENTS.remove(user.client)  # lives for the module, closed below
    with user.http() as http:
        source = int(running_instance(server, http, FILES, onstart_cmd=ONSTART)["id"])
    template = user.client.spot.create_template(source, region="US").template_id
    yield SpotWorld(server, user, tmp_path_factory.mktemp("spot-home"), source, template)
    for deployment in user.client.spot.instances():
        user.client.spot.delete(deployment.instance_id, missing_ok=True)
    for instance in user.client.instances.list():
        user.client.instances.delete(instance.id, missing_ok=True)
    user.client.close()


@pytest.fixture
def clean(world: SpotWorld) -> Iterator[SpotWorld]:
    """The world; the spot deployments a test makes are deleted after it."""
    yield world
    for deployment in world.user.client.spot.instances():
        world.user.client.spot.delete(deployment.instance_id, missing_ok=True)


def test_template_from_an_existing_instance(world: SpotWorld) -> None:
    made = world.json("spot", "template", "create", str(world.source), "--region=US")
    assert made["template_id"].startswith(f"spot_tpl_{world.source}_")
    assert made["region"] == "US" and made["gpu_name"]
    assert made["size_bytes"] >= sum(len(text) for text in FILES.values())
    shown = ok(world.cli("spot", "template", "delete", made["template_id"])).stdout
    assert shown == f"Deleted template {made['template_id']}.\n"
    text = ok(world.cli("spot", "template", "create", str(world.source))).stdout.splitlines()
    template_id = text[0].split()[2]
    assert text[0].startswith(f"Created template {template_id} from instance {world.source} (")
    assert text[1] == f"Deploy it: dumont spot deploy --template={template_id}"
    world.user.client.spot.delete_template(template_id)
    # the server's 422 names the field and the fix, in one line
    assert error_line(
        world.cli("spot", "template", "create", str(world.source), "--workspace-path=/etc")
    ) == (
        "Error: spot template create: Validation error: workspace_path: Value error, '/etc' is "
        "outside /workspace; use /workspace or under it"
    )


def test_list_templates(world: SpotWorld) -> None:
    listed = world.json("spot", "template", "list")
    assert [t["template_id"] for t in listed["templates"]] == [world.template]
    assert listed["count"] == 1 and listed["templates"][0]["instance_id"] == world.source
    table = ok(world.cli("spot", "template", "list")).stdout
    assert world.template in table and "WORKSPACE PATH" in table and "/workspace" in table


@pytest.mark.slow
def test_deploy_from_a_template(clean: SpotWorld) -> None:
    deployed = clean.json(
        "spot", "deploy", f"--template={clean.template}", "--max-price=0.5", "--gpu=rtx4090"
    )
    assert deployed["state"] == "active" and deployed["gpu_name"] == "RTX 4090"
    assert deployed["template_id"] == clean.template and deployed["auto_failover"] is True
    assert 0 < deployed["bid_price"] <= 0.5 and deployed["snapshot_restored"] is True
    instance_id = int(deployed["instance_id"])
    for relative, text in FILES.items():
        assert read_file(clean.server, instance_id, relative) == text
    result = ok(clean.cli("spot", "deploy", f"--template={clean.template}", "--no-auto-failover"))
    line, access = result.stdout.splitlines()
    assert line.startswith("Deployed spot instance ") and "; workspace restored." in line
    other = int(line.split()[3])
    assert access == f"dumont instance exec {other} -- COMMAND"
    # the wait ends once the machine runs, not only once the deployment is recorded
    assert clean.user.client.instances.get(other).is_running
    assert clean.user.client.spot.status(other).auto_failover is False


def test_spot_status(clean: SpotWorld) -> None:
    spot = clean.deploy(max_price=0.6)
    shown = clean.json("spot", "status", str(spot.instance_id))
    assert shown["instance_id"] == spot.instance_id and shown["state"] == "active"
    assert shown["deployment_id"] == spot.deployment_id and shown["max_price"] == 0.6
    fields = dict(
        line.split(None, 1)
        for line in ok(clean.cli("spot", "status", str(spot.instance_id))).stdout.splitlines()
    )
    assert fields["state"] == "active" and fields["max_price"] == "$0.600/h"
    assert fields["failover_count"] == "0"
    # an SSH endpoint on loopback answers nothing: the way in is `instance exec`
    assert fields["access"] == f"dumont instance exec {spot.instance_id} -- COMMAND"


def test_list_spot_instances(clean: SpotWorld) -> None:
    assert ok(clean.cli("spot", "list")).stdout.strip() == "(none)"
    first, second = clean.deploy(), clean.deploy(gpu_preference="RTX 4090")
    listed = clean.json("spot", "list")
    assert listed["count"] == 2
    assert [s["instance_id"] for s in listed["instances"]] == [
        first.instance_id,
        second.instance_id,
    ]
    rows = [line for line in ok(clean.cli("spot", "list")).stdout.splitlines() if "│" in line]
    assert [row.split("│")[0].strip() for row in rows] == [
        str(first.instance_id),
        str(second.instance_id),
    ]
    assert all("active" in row and clean.template in row for row in rows)


def test_pricing_by_region_and_gpu(world: SpotWorld) -> None:
    priced = world.json("spot", "pricing", "--region=US", "--gpu=RTX4090")
    assert priced["region"] == "US" and priced["gpu_name"] == "RTX 4090"
    assert priced["offers_count"] > 0 and priced["cheapest_price"] <= priced["average_price"]
    assert {o["gpu_name"] for o in priced["top_offers"]} == {"RTX 4090"}
    assert {o["region"] for o in priced["top_offers"]} == {"US"}
    everywhere = world.json("spot", "pricing")
    assert everywhere["offers_count"] > priced["offers_count"]
    table = ok(world.cli("spot", "pricing", "--region=EU", "--gpu=A100")).stdout
    assert "cheapest_price" in table and "Cheapest offers" in table and "A100" in table


@pytest.mark.slow
def test_manual_failover(clean: SpotWorld) -> None:
    spot = clean.deploy()
    write_files(clean.server, spot.instance_id, {"progress.txt": "epoch 7\n"})
    result = ok(clean.cli("spot", "failover", str(spot.instance_id)))
    first = result.stdout.splitlines()[0]
    assert first.startswith(f"Failed over spot instance {spot.instance_id} -> ")
    new_id = int(first.rsplit(" ", 1)[1].rstrip("."))
    after = clean.user.client.spot.status(new_id)
    assert after.state == "active" and after.failover_count == 1
    assert after.deployment_id == spot.deployment_id
    with clean.user.http() as http:
        assert instance_gone(http, spot.instance_id)
    # the workspace moved with it: the template's files and what was written since
    assert read_file(clean.server, new_id, "progress.txt") == "epoch 7\n"
    assert read_file(clean.server, new_id, "notes.txt") == FILES["notes.txt"]
    answer = clean.json("spot", "failover", str(new_id))
    assert answer["old_instance_id"] == new_id and answer["status_of_new"]["state"] == "active"


@pytest.mark.slow
def test_automatic_failover_on_a_simulated_interruption(clean: SpotWorld) -> None:
    spot = clean.deploy()
    said = ok(clean.cli("spot", "interrupt", str(spot.instance_id))).stdout
    assert said.startswith(f"Interrupted spot instance {spot.instance_id} (as the market would).")
    clean.server.reconcile()
    (moved,) = clean.json("spot", "list")["instances"]
    assert moved["deployment_id"] == spot.deployment_id
    assert moved["instance_id"] != spot.instance_id
    assert moved["state"] == "active" and moved["failover_count"] == 1
    # workspace restored: a file of the template is there with the same content
    for relative, text in FILES.items():
        assert read_file(clean.server, int(moved["instance_id"]), relative) == text


def test_stop_and_delete(clean: SpotWorld) -> None:
    spot = clean.deploy()
    assert ok(clean.cli("spot", "stop", str(spot.instance_id))).stdout == (
        f"Stopped spot instance {spot.instance_id}: no more automatic failovers.\n"
    )
    stopped = clean.user.client.spot.status(spot.instance_id)
    assert stopped.state == "stopped" and stopped.auto_failover is False
    assert ok(clean.cli("spot", "delete", str(spot.instance_id))).stdout == (
        f"Deleted spot instance {spot.instance_id}.\n"
    )
    assert clean.user.client.spot.instances() == []
    with clean.user.http() as http:
        assert instance_gone(http, spot.instance_id)


@pytest.mark.slow
def test_another_user_sees_none_of_it(clean: SpotWorld, cli: Cli) -> None:
    spot = clean.deploy()
    assert error_line(cli("spot", "status", str(spot.instance_id))) == (
        f"Error: spot status: no spot instance {spot.instance_id} (or it is not yours); "
        "see yours with `dumont spot list`"
    )
    for action in ("failover", "interrupt", "stop", "delete"):
        assert "(or it is not yours)" in error_line(cli("spot", action, str(spot.instance_id)))
    assert error_line(cli("spot", "template", "create", str(clean.source))).startswith(
        f"Error: spot template create: no instance {clean.source} (or it is not yours)"
    )
    assert ok(cli("spot", "list")).stdout.strip() == "(none)"
    assert ok(cli("spot", "template", "list")).stdout.strip() == "(none)"
    assert clean.user.client.spot.status(spot.instance_id).state == "active"
