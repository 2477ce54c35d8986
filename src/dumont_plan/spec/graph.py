"""Dependency graphs of addresses: levels in topological order, cycles, closures. Pure.

A graph maps each node to the nodes it depends on (`{"job.b": ["job.a"]}`: a before b), the
same shape `scheduler.run_dag` takes. Dependencies on nodes that are not keys are ignored here
(the loader reports them as dangling references before a graph is built).

    levels({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}) -> [["a"], ["b", "c"], ["d"]]
    find_cycle({"a": ["b"], "b": ["a"]}) -> ["a", "b", "a"]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from dumont_plan.errors import CycleError

Graph = Mapping[str, Sequence[str]]


def _deps(graph: Graph, node: str) -> list[str]:
    return [d for d in graph.get(node, ()) if d in graph]


def find_cycle(graph: Graph) -> list[str] | None:
    """One cycle as a path (`[a, b, a]`), or None. Deterministic: nodes in sorted order."""
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(graph, white)
    for start in sorted(graph):
        if color[start] != white:
            continue
        # Iterative DFS: (node, iterator over its sorted dependencies).
        stack: list[tuple[str, Iterable[str]]] = [(start, iter(sorted(_deps(graph, start))))]
        path = [start]
        color[start] = grey
        while stack:
            node, children = stack[-1]
            child = next(iter(children), None)
            if child is None:
                color[node] = black
                stack.pop()
                path.pop()
                continue
            if color[child] == grey:
                return [*path[path.index(child) :], child]
            if color[child] == white:
                color[child] = grey
                path.append(child)
                stack.append((child, iter(sorted(_deps(graph, child)))))
    return None


def levels(graph: Graph) -> list[list[str]]:
    """Nodes grouped in levels: a node's dependencies are all in earlier levels.

    Each level is sorted. Raises CycleError (with the cycle's path) when there is no order.
    """
    remaining = {node: set(_deps(graph, node)) for node in graph}
    result: list[list[str]] = []
    while remaining:
        ready = sorted(node for node, deps in remaining.items() if not deps)
        if not ready:
            cycle = find_cycle({node: sorted(deps) for node, deps in remaining.items()})
            raise CycleError(cycle or sorted(remaining))
        result.append(ready)
        for node in ready:
            del remaining[node]
        for deps in remaining.values():
            deps.difference_update(ready)
    return result


def topological_order(graph: Graph) -> list[str]:
    """All nodes, dependencies first (the levels flattened)."""
    return [node for level in levels(graph) for node in level]


def dependencies(graph: Graph, nodes: Iterable[str]) -> set[str]:
    """Everything `nodes` need, transitively (not including `nodes` themselves)."""
    seen: set[str] = set()
    todo = [d for node in nodes for d in _deps(graph, node)]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(_deps(graph, node))
    return seen


def dependents(graph: Graph, nodes: Iterable[str]) -> set[str]:
    """Everything that needs any of `nodes`, transitively (not including `nodes` themselves)."""
    reverse: dict[str, list[str]] = {node: [] for node in graph}
    for node in graph:
        for dep in _deps(graph, node):
            reverse[dep].append(node)
    return dependencies(reverse, nodes)
