"""spec/graph.py: levels, cycles, closures."""

from __future__ import annotations

import pytest

from dumont_plan.errors import CycleError
from dumont_plan.spec.graph import (
    dependencies,
    dependents,
    find_cycle,
    levels,
    topological_order,
)

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
