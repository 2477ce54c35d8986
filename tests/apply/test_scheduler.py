"""The DAG scheduler under apply: dependency order, bounded parallelism, failure isolation."""

from __future__ import annotations

import random
import threading
import time

import pytest

from dumont_plan.apply.scheduler import run_dag
from dumont_plan.spec.graph import dependents


def test_runs_in_dependency_order() -> None:
    seen: list[str] = []
    lock = threading.Lock()

    def work(name: str) -> None:
        with lock:
            seen.append(name)

    outcome = run_dag({"c": ["b"], "b": ["a"], "a": []}, work, parallelism=4)
    assert seen == ["a", "b", "c"]
    assert outcome.done == ["a", "b", "c"]
    assert outcome.failed == {} and outcome.skipped == {}


def test_failure_skips_dependents_transitively_and_independent_work_completes() -> None:
    def work(name: str) -> None:
        if name == "a":
            raise RuntimeError("boom")

    skips: list[tuple[str, str]] = []
    outcome = run_dag(
        {"a": [], "b": ["a"], "c": ["b"], "d": [], "e": ["d"]},
        work,
        on_skip=lambda name, cause: skips.append((name, cause)),
    )
    assert sorted(outcome.done) == ["d", "e"]
    assert list(outcome.failed) == ["a"]
    assert str(outcome.failed["a"]) == "boom"
    assert outcome.skipped == {"b": "a", "c": "a"}
    assert skips == [("b", "a"), ("c", "a")]


def test_parallelism_is_a_ceiling() -> None:
    active = 0
    peak = 0
    lock = threading.Lock()
    full = threading.Event()  # the first tasks hold on until 3 run at once

    def work(name: str) -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
            if active == 3:
                full.set()
        full.wait(timeout=60)
        time.sleep(0.01)
        with lock:
            active -= 1

    outcome = run_dag({f"t{i}": [] for i in range(9)}, work, parallelism=3)
    assert len(outcome.done) == 9
    assert peak == 3


def test_an_abort_stops_new_work_and_calls_on_abort() -> None:
    started: list[str] = []
    aborted = threading.Event()

    def work(name: str) -> None:
        started.append(name)
        if name == "a":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_dag({"a": [], "b": ["a"], "c": ["b"]}, work, parallelism=1, on_abort=aborted.set)
    assert started == ["a"]
    assert aborted.is_set()


def test_unknown_dependencies_count_as_satisfied() -> None:
    outcome = run_dag({"b": ["not-planned"]}, lambda name: None)
    assert outcome.done == ["b"]


def test_cycle_is_refused() -> None:
    with pytest.raises(ValueError, match="dependency cycle between: a, b"):
        run_dag({"a": ["b"], "b": ["a"]}, lambda name: None)


def test_self_dependencies_are_ignored() -> None:
    outcome = run_dag({"a": ["a"], "b": ["b", "a"]}, lambda name: None)
    assert outcome.done == ["a", "b"]


def reference_order(deps: dict[str, list[str]]) -> list[str]:
    """One task at a time: always the first task of `deps` whose dependencies are all done."""
    done: set[str] = set()
    order: list[str] = []
    while len(order) < len(deps):
        name = next(n for n in deps if n not in done and all(d in done for d in deps[n]))
        order.append(name)
        done.add(name)
    return order


def test_ready_tasks_start_in_the_order_of_deps() -> None:
    # "z" is ready first; "b" becomes ready when "z" is done and comes before "a" in deps.
    started: list[str] = []
    run_dag({"z": [], "b": ["z"], "a": [], "c": []}, started.append, parallelism=1)
    assert started == ["z", "b", "a", "c"]
    # A random DAG, keys shuffled: the start order is the simple rule's, task for task.
    rng = random.Random(9)
    names = [f"t{i:03d}" for i in range(300)]
    deps = {name: rng.sample(names[:i], min(i, rng.randint(0, 3))) for i, name in enumerate(names)}
    shuffled = dict(rng.sample(sorted(deps.items()), len(deps)))
    started.clear()
    outcome = run_dag(shuffled, started.append, parallelism=1)
    assert started == reference_order(shuffled) == outcome.done


def big_dag(n: int) -> dict[str, list[str]]:
    """Blocks of ten: a root (after the previous root), a fan-out of four, chains, a fan-in."""
    deps: dict[str, list[str]] = {}
    for i in range(n):
        root, slot = i - i % 10, i % 10
        if slot == 0:
            deps[f"t{i}"] = [f"t{i - 10}"] if i else []
        elif slot <= 4:
            deps[f"t{i}"] = [f"t{root}"]
        elif slot <= 8:
            deps[f"t{i}"] = [f"t{i - 4}"]
        else:
            deps[f"t{i}"] = [f"t{j}" for j in range(root + 5, root + 9)]
    return deps


def test_a_5000_task_dag_runs_every_task_after_its_dependencies() -> None:
    deps = big_dag(5000)
    lock = threading.Lock()
    events: list[tuple[str, str]] = []

    def work(name: str) -> None:
        with lock:
            events.append(("start", name))
        with lock:
            events.append(("end", name))

    outcome = run_dag(deps, work, parallelism=10)
    assert sorted(outcome.done) == sorted(deps) and not outcome.failed and not outcome.skipped
    ended: set[str] = set()
    for what, name in events:
        if what == "start":
            assert all(d in ended for d in deps[name]), name
        else:
            ended.add(name)
    assert len(ended) == 5000


def test_a_failure_in_a_5000_task_dag_skips_exactly_its_dependents() -> None:
    deps = big_dag(5000)

    def work(name: str) -> None:
        if name in ("t2500", "t1003"):  # a root (all that follows needs it), a branch
            raise RuntimeError(name)

    outcome = run_dag(deps, work, parallelism=10)
    needs = dependents(deps, ["t2500", "t1003"])
    assert set(outcome.failed) == {"t2500", "t1003"}
    assert set(outcome.skipped) == needs and len(needs) == 2499 + 2
    assert outcome.skipped["t1009"] == "t1003" and outcome.skipped["t4999"] == "t2500"
    assert set(outcome.done) == set(deps) - needs - {"t2500", "t1003"}
