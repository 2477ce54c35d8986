"""`dumont wizard deploy` end to end: real races on the local control plane's simulated market.

Every race here is real: offers from the server, parallel creates, one list call per poll,
losers deleted. The market is the server's seeded catalogue (seed 7, 200 machines), so the
tiers and regions below are known to have bootable machines.
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from dumont_plan.cli.wizard import RaceProgress
from dumont_plan.wire_models import Instance, Offer
from dumont_plan.wizard import REGION_COUNTRIES, SPEED_TIERS, RaceEvent, WizardRequest, run_race
from tests.cli.instancekit import Cli, ok
from tests.support import LocalServer, UserSession, cli_env, new_user


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: "), result.stderr
    return lines[-1]


def deployed(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ok(result).stdout)
    return data


def assert_only_the_winner_is_left(user: UserSession, race: dict[str, Any]) -> Instance:
    """The winner runs; every other machine the race created is gone."""
    instances = user.client.instances.list()
    assert [i.id for i in instances] == [race["instance_id"]]
    winner = instances[0]
    assert winner.is_running
    for loser in race["losers"] + race["failed"]:
        assert loser not in {i.id for i in instances}
    return winner


def country(geolocation: str) -> str:
    return geolocation.rsplit(",", 1)[-1].strip()


# ----------------------------------------------------------------------------- the forms


@pytest.mark.slow
def test_deploy_old_form_races_a_batch_and_keeps_only_the_winner(
    run: Cli, user: UserSession
) -> None:
    result = ok(run("wizard", "deploy", "speed=slow", "price=2.0", "region=global"))

    first = result.stdout.splitlines()[0]
    assert first.startswith("Deployed instance ")
    instance_id = int(first.removeprefix("Deployed instance ").rstrip("."))
    fields = dict(line.split(None, 1) for line in result.stdout.splitlines()[1:])
    assert fields["id"] == str(instance_id)
    assert fields["access"] == f"dumont instance exec {instance_id} -- COMMAND"
    assert fields["status"] == "running"
    # Live progress on stderr: a whole batch booted at once, one winner, the others cancelled.
    assert "batch 1: racing offers" in result.stderr
    assert result.stderr.count(" booting   instance ") == 5
    assert f" winner    instance {instance_id}:" in result.stderr
    assert result.stderr.count(" cancelled instance ") + result.stderr.count(" failed ") == 4
    instances = user.client.instances.list()
    assert [i.id for i in instances] == [instance_id]
    assert instances[0].is_running


@pytest.mark.slow
def test_deploy_a_specific_gpu_with_flags(run: Cli, user: UserSession) -> None:
    race = deployed(
        run(
            "wizard",
            "deploy",
            "RTX 4090",
            "--speed=ultra",
            "--price=1.5",
            "--region=EU",
            "--output",
            "json",
        )
    )

    winner = assert_only_the_winner_is_left(user, race)
    assert winner.gpu_name == "RTX 4090"
    assert country(str(winner.geolocation)) in REGION_COUNTRIES["EU"]
    assert race["offer"]["inet_down"] >= 4000
    assert race["offer"]["dph_total"] <= 1.5


TIERS = ("slow", "medium", "fast", "ultra")


@pytest.mark.parametrize(
    "tier",  # the inner loop (`-m "not slow"`) deploys one tier; CI deploys each
    [t if t == "fast" else pytest.param(t, marks=pytest.mark.slow) for t in TIERS],
)
def test_deploy_each_speed_tier(run: Cli, user: UserSession, tier: str) -> None:
    race = deployed(run("wizard", "deploy", f"speed={tier}", "--output", "json"))

    assert_only_the_winner_is_left(user, race)
    low, high = SPEED_TIERS[tier]
    assert low <= race["offer"]["inet_down"]
    assert high is None or race["offer"]["inet_down"] < high
    assert race["offer"]["dph_total"] <= 2.0


@pytest.mark.slow
def test_deploy_in_a_region(run: Cli, user: UserSession) -> None:
    race = deployed(run("wizard", "deploy", "speed=medium", "region=EU", "--output", "json"))

    winner = assert_only_the_winner_is_left(user, race)
    assert country(str(winner.geolocation)) in REGION_COUNTRIES["EU"]


@pytest.mark.slow
def test_a_blacklisted_machine_is_never_chosen(run: Cli, user: UserSession) -> None:
    request = WizardRequest(speed_tier="fast", region="US").validated()
    cheapest = user.client.instances.offers(**request.offer_filters())
    banned = cheapest[0].machine_id
    assert banned is not None  # the first machine the race would have tried
    ok(run("blacklist", "add", "local", banned, "boots too slowly"))

    events: list[RaceEvent] = []
    result = run_race(user.client, request, on_event=events.append)

    assert banned not in {c.offer.machine_id for c in result.candidates}
    assert result.winner.machine_id != banned
    assert not any(e.offer and e.offer.machine_id == banned for e in events)
    race = deployed(run("wizard", "deploy", "speed=fast", "region=US", "--output", "json"))
    assert race["winner"]["machine_id"] != banned


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["speed=warp"],
            "Error: wizard deploy: speed tier 'warp' is unknown; "
            "use one of: slow, medium, fast, ultra",
        ),
        (
            ["--speed=warp"],
            "Error: wizard deploy: speed tier 'warp' is unknown; "
            "use one of: slow, medium, fast, ultra",
        ),
        (
            ["price=-1"],
            "Error: wizard deploy: price -1 must be above 0 ($/h); "
            "give the highest $/h you accept, e.g. 2.0",
        ),
        (
            ["--price=-0.5"],
            "Error: wizard deploy: price -0.5 must be above 0 ($/h); "
            "give the highest $/h you accept, e.g. 2.0",
        ),
        (
            ["price=cheap"],
            "Error: wizard deploy: price 'cheap' is not a number; give $/h, e.g. price=2.0",
        ),
        (
            ["region=MARS"],
            "Error: wizard deploy: region 'MARS' is unknown; use one of: global, US, EU, ASIA",
        ),
        (
            ["--region=moon"],
            "Error: wizard deploy: region 'moon' is unknown; use one of: global, US, EU, ASIA",
        ),
        (
            ["colour=red"],
            "Error: wizard deploy: unknown option 'colour'; use one of: gpu, speed, price, region",
        ),
        (
            ["RTX", "4090"],
            "Error: wizard deploy: unexpected argument '4090'; "
            'quote a GPU name with spaces: dumont wizard deploy "RTX 4090"',
        ),
        (
            ["speed=fast", "--speed=ultra"],
            "Error: wizard deploy: speed given twice (speed=fast and --speed=ultra); give it once",
        ),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_1(
    run: Cli, user: UserSession, args: list[str], message: str
) -> None:
    result = run("wizard", "deploy", *args)

    assert one_error_line(result) == message
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""
    assert user.client.instances.list() == []


def test_no_offers_names_the_filters_and_the_fix(run: Cli, user: UserSession) -> None:
    result = run("wizard", "deploy", "H100", "speed=slow", "price=0.05", "region=ASIA")

    assert one_error_line(result) == (
        "Error: no GPU offers match gpu=H100, speed=slow (100-500 Mbps), price <= $0.05/h, "
        "region=ASIA, disk >= 50 GB; raise the price cap (now $0.05/h); "
        "widen the region to global or choose another GPU or any GPU; "
        "`dumont instance offers` lists what the market has"
    )
    assert user.client.instances.list() == []


def test_help_has_examples(run: Cli) -> None:
    result = ok(run("wizard", "deploy", "--help"))
    assert 'dumont wizard deploy "RTX 4090" speed=fast price=2.0 region=global' in result.stdout
    assert 'dumont wizard deploy "RTX 4090" --speed=ultra --price=1.5 --region=EU' in result.stdout


# ----------------------------------------------------------------------------- Ctrl-C


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """A private server whose machines boot 40x slower (12-100 s), so a race can be interrupted.

    The time scale divides simulated durations: 0.025 makes them 40 times longer.
    """
    server = LocalServer(
        tmp_path_factory.mktemp("slow-boots"), env={"DUMONT_SERVER_TIME_SCALE": "0.025"}
    ).start()
    yield server
    server.stop()


@pytest.mark.slow
def test_ctrl_c_mid_race_leaves_no_machine(slow_server: LocalServer, tmp_path: Path) -> None:
    user = new_user(slow_server.url)
    home = tmp_path / "home"
    home.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dumont_plan", "wizard", "deploy", "speed=slow"],
        env=cli_env(home, user.url, user.token),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    try:
        booting = 0
        while booting < 5:
            line = proc.stderr.readline()
            assert line, "the wizard ended before its batch booted"
            booting += " booting " in line
        assert len(user.client.instances.list()) == 5

        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=60)
    finally:  # a failed assertion must not leave the wizard racing in this run's process group
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

    assert proc.returncode == 130, rest
    assert "stopping (KeyboardInterrupt): deleting every machine created" in rest
    assert rest.count(" cancelled instance ") == 5
    assert rest.strip().endswith("Interrupted: every machine the race created was deleted.")
    assert user.client.instances.list() == []
    # Cancelled, not failed: nothing counts against those machines.
    assert user.client.history.attempts() == [], json.dumps(user.client.history.attempts())


# ----------------------------------------------------------------------------- progress drawing


def race_events() -> list[RaceEvent]:
    offer = Offer(id=7, gpu_name="RTX 4090", dph_total=0.35, geolocation="Texas, US")
    other = Offer(id=8, gpu_name="RTX 3090", dph_total=0.2, geolocation="Oregon, US")
    return [
        RaceEvent("search", 0.0, message="gpu=any, speed=fast"),
        RaceEvent("offers", 0.1, message="2 offers to race"),
        RaceEvent("batch", 0.1, batch=1, message="7, 8"),
        RaceEvent("create", 0.1, batch=1, offer=offer),
        RaceEvent("create", 0.1, batch=1, offer=other),
        RaceEvent("created", 0.2, batch=1, offer=offer, instance_id=1, status="loading"),
        RaceEvent("created", 0.2, batch=1, offer=other, instance_id=2, status="loading"),
        RaceEvent("status", 1.0, batch=1, offer=offer, instance_id=1, status="running"),
        RaceEvent("winner", 1.0, batch=1, offer=offer, instance_id=1, status="running"),
        RaceEvent("cancelled", 1.1, batch=1, offer=other, instance_id=2, message="1 won"),
        RaceEvent("done", 1.1, batch=1, instance_id=1),
    ]


def test_progress_on_a_terminal_is_a_live_table() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120, color_system=None)

    with RaceProgress(console) as progress:
        for event in race_events():
            progress(event)

    final = buffer.getvalue().split("Batch 1: racing offers 7, 8")[-1]
    assert "WINNER" in final and "cancelled" in final and "RTX 3090" in final


def test_progress_off_a_terminal_is_plain_lines() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False, width=200)

    with RaceProgress(console) as progress:
        for event in race_events():
            progress(event)

    assert buffer.getvalue().splitlines() == [
        "[  0.0s] searching offers: gpu=any, speed=fast",
        "[  0.1s] found 2 offers to race",
        "[  0.1s] batch 1: racing offers 7, 8",
        "[  0.2s] booting   instance 1: RTX 4090 $0.350/h Texas, US (offer 7)",
        "[  0.2s] booting   instance 2: RTX 3090 $0.200/h Oregon, US (offer 8)",
        "[  1.0s] winner    instance 1: RTX 4090 $0.350/h",
        "[  1.1s] cancelled instance 2 (1 won)",
    ]


def test_an_unknown_gpu_gets_a_did_you_mean(run: Cli) -> None:
    result = run("wizard", "deploy", "RTX 4099")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: no GPU model 'RTX 4099' on the market; did you mean 'RTX 4090'?"
    ), result.stderr
    far = run("wizard", "deploy", "RTX 9999").stderr.strip().splitlines()[-1]
    assert far.startswith("Error: no GPU model 'RTX 9999' on the market; did you mean"), far
    assert "raise the price cap" not in far  # the cap is not what is wrong


@pytest.mark.slow
def test_offers_held_by_your_own_instances_are_named(run: Cli, user: UserSession) -> None:
    # Hold every ultra-speed H100 machine in the EU, then ask the wizard for one more.
    filters = {"gpu_name": "H100", "min_inet_down": 4000, "max_price": 100, "limit": 100}
    held = [
        user.client.instances.create(o.id).id
        for o in user.client.instances.offers(**filters)
        if (o.num_gpus or 1) == 1
    ]
    assert held, "the market has no 1-GPU ultra H100 to hold"
    result = run("wizard", "deploy", "H100", "--speed=ultra", "--price=100")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert f"your own {len(held)} instance" in line and "hold H100 machines" in line, line
    assert str(held[0]) in line and "delete one you no longer need" in line
