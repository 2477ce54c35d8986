"""spec/graph.py: levels, cycles, closures, and the one topological path everything uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dumont_plan.apply.scheduler import run_dag
from dumont_plan.errors import CycleError, SpecError
from dumont_plan.loader import load_stack
from dumont_plan.plan.build import PlanOptions, build_plan
from dumont_plan.plan.model import Observed
from dumont_plan.spec import graph
from dumont_plan.spec.graph import (
    ReadyQueue,
    check_acyclic,
    dependencies,
    dependents,
    find_cycle,
    levels,
    reverse,
    topological_order,
)
from dumont_plan.state.ledger import LedgerEntry, LedgerState

DIAMOND = {"d": ["b", "c"], "b": ["a"], "c": ["a"], "a": []}


def test_levels_put_dependencies_first() -> None:
    assert levels(DIAMOND) == [["a"], ["b", "c"], ["d"]]
    assert topological_order(DIAMOND) == ["a", "b", "c", "d"]
    assert levels({}) == []


def test_unknown_dependencies_are_ignored() -> None:
    assert levels({"a": ["elsewhere"], "b": ["a"]}) == [["a"], ["b"]]


def test_cycles_are_found_with_their_path() -> None:
    assert find_cycle(DIAMOND) is None
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"], "x": []}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["a"]}) == ["a", "a"]
    with pytest.raises(CycleError) as info:
        levels({"ok": [], "a": ["b", "ok"], "b": ["a"]})
    assert info.value.cycle == ["a", "b", "a"]
    assert str(info.value) == "dependency cycle: a -> b -> a"


def test_closures() -> None:
    assert dependencies(DIAMOND, ["d"]) == {"a", "b", "c"}
    assert dependencies(DIAMOND, ["a"]) == set()
    assert dependents(DIAMOND, ["a"]) == {"b", "c", "d"}
    assert dependents(DIAMOND, ["c"]) == {"d"}


def test_a_long_chain_does_not_recurse() -> None:
    chain = {f"n{i}": [f"n{i - 1}"] if i else [] for i in range(5000)}
    assert topological_order(chain)[-1] == "n4999"
    chain["n0"] = ["n4999"]
    cycle = find_cycle(chain)
    assert cycle is not None and len(cycle) == 5001


def test_the_ready_queue_hands_out_ready_nodes_in_the_graph_order() -> None:
    queue = ReadyQueue({"z": [], "b": ["z"], "a": [], "c": ["a", "elsewhere"]})
    assert len(queue) == 2
    assert queue.pop() == "z"
    queue.done("z")
    assert queue.pop_all() == ["b", "a"]  # b became ready and comes first in the graph
    assert not queue
    queue.done("b", "a")
    assert queue.pop() == "c"
    with pytest.raises(IndexError):
        queue.pop()


def test_a_cycle_is_refused_with_its_path() -> None:
    check_acyclic(DIAMOND)
    cyclic = {"x": ["a"], "a": ["b"], "b": ["a"], "y": []}
    for refuse in (check_acyclic, ReadyQueue, levels):
        with pytest.raises(CycleError) as info:
            refuse(cyclic)
        assert info.value.cycle == ["a", "b", "a"]
        assert str(info.value) == "dependency cycle: a -> b -> a"


def test_reverse_lists_direct_dependents_once() -> None:
    assert reverse({"a": [], "b": ["a", "a"], "c": ["a", "b", "gone"]}) == {
        "a": ["b", "c"],
        "b": ["c"],
        "c": [],
    }


def test_the_loader_the_plan_and_the_scheduler_share_one_topological_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each orders (or refuses a cycle) through ReadyQueue, and says so in its own words."""
    built: list[list[str]] = []
    init = ReadyQueue.__init__

    def counting(self: ReadyQueue, graph_: Any) -> None:
        built.append(sorted(graph_))
        init(self, graph_)

    monkeypatch.setattr(graph.ReadyQueue, "__init__", counting)
    spec = tmp_path / "dumont.yaml"
    spec.write_text(
        "project: p\njobs:\n  a:\n    command: echo ${job.b.id}\n"
        "  b: {command: echo, depends_on: [job.a]}\n"
    )
    with pytest.raises(SpecError) as error:
        load_stack([spec], tmp_path, env={})
    assert "4:14 jobs.a.command: dependency cycle job.a -> job.b -> job.a;" in str(error.value)
    assert built == [["job.a", "job.b"]]

    spec.write_text("project: p\njobs:\n  a: {command: echo}\n")
    stack = load_stack([spec], tmp_path, env={})
    state = LedgerState(project="p")
    for name, needs in (("x", ["job.y"]), ("y", ["job.x"])):
        state.resources[f"job.{name}"] = LedgerEntry(kind="job", remote_id=name, depends_on=needs)
    built.clear()
    plan = build_plan(stack, Observed(), state, PlanOptions())
    assert plan.errors[0].startswith("dependency cycle: job.x -> job.y -> job.x; break it")
    assert built == [["job.a", "job.x", "job.y"]]

    built.clear()
    with pytest.raises(ValueError, match="dependency cycle between: x, y"):
        run_dag({"x": ["y"], "y": ["x"], "z": []}, lambda name: None)
    assert built == [["x", "y", "z"]]
