"""The DAG scheduler under apply: dependency order, bounded parallelism, failure isolation."""

from __future__ import annotations

import threading
import time

import pytest

from dumont_plan.apply.scheduler import run_dag


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
