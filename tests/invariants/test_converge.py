"""Invariant 1: after an apply, `plan` shows no changes and a second apply mutates nothing.

Every runnable example (each folder of `examples/` but ci/, its files one stack) is
applied from scratch against a private control plane, whose request counter proves the
second apply made no mutating call.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.apply.applykit import Project, live_names
from tests.support import REPO, LocalServer, new_user

# Each example file, and each example folder (its files merge into one stack) except ci/.
EXAMPLES = sorted(
    p.name
    for p in (REPO / "examples").iterdir()
    if (p.is_file() and p.suffix == ".yaml") or (p.is_dir() and p.name != "ci")
)


@pytest.fixture(scope="module")
def private_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    server = LocalServer(tmp_path_factory.mktemp("converge-plane")).start()
    yield server
    server.stop()


def test_examples_are_all_covered() -> None:
    assert {"jobs", "instances", "mixed", "multi", "spot", "serverless"} <= set(EXAMPLES)
    # Each example is a folder of its own, so each has its own `.dumont/` and they never
    # block each other ("state file belongs to project ..."): no spec file directly in examples/.
    assert not list((REPO / "examples").glob("*.yaml"))


# The inner loop (`-m "not slow"`) converges one example; CI converges every one.
INNER_LOOP_EXAMPLE = "jobs"


@pytest.mark.parametrize(
    "example",
    [e if e == INNER_LOOP_EXAMPLE else pytest.param(e, marks=pytest.mark.slow) for e in EXAMPLES],
)
def test_apply_converges_and_a_second_apply_mutates_nothing(
    example: str, private_server: LocalServer, tmp_path: Path
) -> None:
    user = new_user(private_server.url)
    home = tmp_path / "home"
    home.mkdir()
    proj = Project(tmp_path / "work", home, user.url, user.token, DEMO_TOKEN="demo-token-value")
    source = REPO / "examples" / example
    if source.is_dir():
        shutil.copytree(source, proj.folder / example)
        beside = example  # the state lives beside the first spec file
    else:
        shutil.copy(source, proj.folder / example)
        beside = "."

    first = proj("apply", "-f", example, "-y", timeout=180)
    assert "Apply complete" in first.stdout, first.stdout
    proj("plan", "-f", example, "--detailed-exitcode")

    before = private_server.mutating_requests()
    second = proj("apply", "-f", example, "-y")
    assert "No changes." in second.stdout
    assert private_server.mutating_requests() == before

    jobs, instances = live_names(user.client)
    managed = proj.state(beside)["resources"]
    # A spot deployment runs on an instance of its own (labelled after its template).
    spot = user.client.spot.instances()
    assert len(spot) == sum(1 for a in managed if a.startswith("spot_deployment."))
    instances -= Counter(str(user.client.instances.get(s.instance_id).label) for s in spot)
    # A job with `schedule: {cron}` is a schedule (its runs are jobs; none is due here).
    schedules = Counter(str(s["name"]) for s in user.client.jobs.list_schedules())
    assert sum(jobs.values()) + sum(schedules.values()) == sum(
        1 for a in managed if a.startswith("job.")
    )
    assert sum(instances.values()) == sum(1 for a in managed if a.startswith("instance."))
    assert all(n == 1 for n in [*jobs.values(), *instances.values(), *schedules.values()])
    proj("destroy", "-f", example, "-y", timeout=180)
    assert proj.state(beside)["resources"] == {}
    assert user.client.jobs.list_schedules() == []  # destroy deleted them
