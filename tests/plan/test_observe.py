"""observe + plan against the real local control plane: O(kinds) requests (invariant 3)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dumont_plan.apply.observe import Prefetch, observe
from dumont_plan.apply.workflow import plan_stack
from dumont_plan.errors import DumontError
from dumont_plan.plan.build import PlanOptions
from dumont_plan.plan.model import Action
from dumont_plan.state.ledger import Ledger, LedgerEntry
from tests.plan.golden import stack_of
from tests.support import LocalServer, UserSession

LIVE = 120  # jobs that exist on the server (each one starts a runner: creating 500 is slow)
DECLARED = 500  # jobs in the spec


def spec(count: int) -> dict[str, object]:
    return {
        "version": 1,
        "project": "big",
        "instances": {"box": {"gpu_name": "RTX 4090"}},
        "jobs": {f"j{i:03d}": {"command": "true", "gpu_type": "RTX 4090"} for i in range(count)},
    }


@pytest.mark.slow
def test_plan_over_500_resources_makes_a_handful_of_requests(
    server: LocalServer, user: UserSession, tmp_path: Path
) -> None:
    def create(i: int) -> tuple[int, str]:
        job = user.client.jobs.create(name=f"big-j{i:03d}", command="true")
        return i, job.id

    with ThreadPoolExecutor(max_workers=8) as pool:
        created = dict(pool.map(create, range(LIVE)))
    stack = stack_of(spec(DECLARED), tmp_path)
    ledger = Ledger.load(tmp_path / ".dumont" / "state.json", "big")
    for i, job_id in created.items():
        ledger.state.resources[f"job.j{i:03d}"] = LedgerEntry(
            kind="job", remote_id=job_id, remote_name=f"big-j{i:03d}"
        )

    before = server.stats()["requests"]
    start = user.client.transport.request_count
    plan, observed = plan_stack(user.client, stack, ledger, PlanOptions())
    used = user.client.transport.request_count - start
    after = server.stats()["requests"]

    assert len(observed.live["job"]) == LIVE
    assert len(plan.changes) == DECLARED + 1
    actions = {c.action for c in plan.changes}
    assert actions <= {Action.noop, Action.create}
    assert sum(c.action is Action.create for c in plan.changes) == DECLARED - LIVE + 1
    # 2 pages of jobs, 1 instance list, 2 offer searches (the jobs' GPU, the instance's race).
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert delta["GET /api/v1/jobs/"] == 2
    assert delta["GET /api/v1/instances"] == 1
    assert delta["GET /api/v1/instances/offers"] == 2
    assert used == 5
    assert plan.summary.hourly_delta > 0


def test_observe_reads_each_kind_once_whatever_the_spec(user: UserSession) -> None:
    start = user.client.transport.request_count
    observed = observe(user.client, ["job", "instance"])
    assert observed.live == {"job": [], "instance": []}
    assert observed.requests == user.client.transport.request_count - start == 2


def test_prefetched_lists_are_not_read_again(user: UserSession) -> None:
    job = user.client.jobs.create(name="pre-a", command="true")
    start = user.client.transport.request_count
    prefetch = Prefetch(user.client, ["job"])
    observed = observe(user.client, ["job", "instance"], prefetched=prefetch)
    assert [j.id for j in observed.live["job"]] == [job.id]
    assert observed.live["instance"] == []
    # The job list read once (in the background), the instance list once: no read twice.
    assert observed.requests == user.client.transport.request_count - start == 2


def test_a_failed_prefetch_is_reported_by_observe(user: UserSession) -> None:
    token = user.client.token
    user.client.token = "not-a-token"
    prefetch = Prefetch(user.client, ["job"])
    try:
        with pytest.raises(DumontError, match="cannot read the live jobs"):
            observe(user.client, ["job"], prefetched=prefetch)
    finally:
        user.client.token = token
