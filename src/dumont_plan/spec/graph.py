"""Dependency graphs of addresses: topological order, cycles, closures. Pure.

A graph maps each node to the nodes it depends on (`{"job.b": ["job.a"]}`: a before b), the
same shape `scheduler.run_dag` takes. Dependencies on nodes that are not keys are ignored here
(the loader reports them as dangling references before a graph is built).

    levels({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}) -> [["a"], ["b", "c"], ["d"]]
    find_cycle({"a": ["b"], "b": ["a"]}) -> ["a", "b", "a"]

Every topological order of the package goes through `ReadyQueue` (one `graphlib` sorter and a
heap): the loader's cycle check (`check_acyclic`), the plan's order (`levels`) and the apply
scheduler (nodes handed out as they become ready). O((nodes + edges) log nodes).
"""

from __future__ import annotations

import graphlib
import heapq
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


class ReadyQueue:
    """The nodes of `graph`, each handed out once everything it depends on is `done`.

    Among the nodes ready at the same time, `pop` gives the one that comes first in the
    graph's own order (a heap keyed by position), so the order is stable. A node never marked
    done holds back its dependents forever (the scheduler skips them). Raises CycleError
    (with the cycle's path) when the graph has no order.

        queue = ReadyQueue({"a": [], "b": ["a"]})
        queue.pop() -> "a"; queue.done("a"); queue.pop() -> "b"
    """

    def __init__(self, graph: Graph) -> None:
        self._position = {node: index for index, node in enumerate(graph)}
        self._sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
        for node in graph:
            self._sorter.add(node, *_deps(graph, node))
        try:
            self._sorter.prepare()
        except graphlib.CycleError as exc:
            raise CycleError(find_cycle(graph) or sorted(graph)) from exc
        self._heap: list[tuple[int, str]] = []
        self._push(self._sorter.get_ready())

    def _push(self, nodes: Iterable[str]) -> None:
        for node in nodes:
            heapq.heappush(self._heap, (self._position[node], node))

    def __len__(self) -> int:
        """How many nodes are ready and not popped yet."""
        return len(self._heap)

    def pop(self) -> str:
        """The ready node that comes first in the graph's order (IndexError when none)."""
        return heapq.heappop(self._heap)[1]

    def pop_all(self) -> list[str]:
        """Every ready node, in the graph's order."""
        ready = [node for _, node in sorted(self._heap)]
        self._heap.clear()
        return ready

    def done(self, *nodes: str) -> None:
        """Mark popped nodes done: dependents whose dependencies are all done become ready."""
        self._sorter.done(*nodes)
        self._push(self._sorter.get_ready())


def check_acyclic(graph: Graph) -> None:
    """Raise CycleError (with the cycle's path) when `graph` has no topological order."""
    ReadyQueue(graph)


def levels(graph: Graph) -> list[list[str]]:
    """Nodes grouped in levels: a node's dependencies are all in earlier levels.

    Each level is sorted. Raises CycleError (with the cycle's path) when there is no order.
    """
    if not any(graph.values()):  # nothing depends on anything (most specs): one level
        return [sorted(graph)] if graph else []
    queue = ReadyQueue(graph)
    result: list[list[str]] = []
    while queue:
        level = sorted(queue.pop_all())
        result.append(level)
        queue.done(*level)
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


def reverse(graph: Graph) -> dict[str, list[str]]:
    """Node -> the nodes that depend on it directly, each once, in the graph's order."""
    result: dict[str, list[str]] = {node: [] for node in graph}
    for node in graph:
        for dep in dict.fromkeys(_deps(graph, node)):
            result[dep].append(node)
    return result


def dependents(graph: Graph, nodes: Iterable[str]) -> set[str]:
    """Everything that needs any of `nodes`, transitively (not including `nodes` themselves)."""
    return dependencies(reverse(graph), nodes)
