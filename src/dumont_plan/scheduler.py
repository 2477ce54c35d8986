"""Run a DAG of tasks with bounded parallelism; a failure skips its dependents only.

    outcome = run_dag({"a": [], "b": ["a"], "c": []}, work, parallelism=8)
    outcome.done, outcome.failed, outcome.skipped

A task starts once every task it depends on is done; up to `parallelism` run at once in a
thread pool. When a task fails (its `work` raised), every task depending on it, transitively,
is skipped and never started, while independent tasks complete. Dependencies on names that are
not tasks are treated as satisfied (e.g. a resource left out by `--target`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field


@dataclass
class DagOutcome:
    """Which tasks finished, failed (with the exception) or were skipped (with the cause)."""

    done: list[str] = field(default_factory=list)
    failed: dict[str, BaseException] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # name -> the failed task it needed


def run_dag(
    deps: Mapping[str, Sequence[str]],
    work: Callable[[str], None],
    *,
    parallelism: int = 8,
    on_skip: Callable[[str, str], None] | None = None,
) -> DagOutcome:
    """Run `work(name)` for every name of `deps` in dependency order (see the module doc).

    `on_skip(name, cause)` is called for each skipped task as soon as it is known. Tasks are
    started in the order of `deps` among those that are ready, so the order is stable.
    Raises ValueError for a dependency cycle (the plan rejects cycles before this point).
    """
    if parallelism < 1:
        raise ValueError("parallelism must be at least 1")
    order = list(deps)
    waiting: dict[str, set[str]] = {
        name: {d for d in deps[name] if d in deps and d != name} for name in order
    }
    dependents: dict[str, list[str]] = {name: [] for name in order}
    for name in order:
        for dep in waiting[name]:
            dependents[dep].append(name)
    _check_acyclic(waiting)

    outcome = DagOutcome()
    ready = [name for name in order if not waiting[name]]
    running: dict[Future[None], str] = {}

    def skip_dependents(root: str) -> None:
        stack = list(dependents[root])
        while stack:
            name = stack.pop(0)
            if name in outcome.skipped or name in outcome.failed or name in outcome.done:
                continue
            outcome.skipped[name] = root
            if name in ready:
                ready.remove(name)
            if on_skip is not None:
                on_skip(name, root)
            stack.extend(dependents[name])

    with ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="apply") as pool:
        while ready or running:
            while ready and len(running) < parallelism:
                name = ready.pop(0)
                running[pool.submit(work, name)] = name
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in sorted(finished, key=lambda f: order.index(running[f])):
                name = running.pop(future)
                error = future.exception()
                if error is not None:
                    if not isinstance(error, Exception):
                        # KeyboardInterrupt/SystemExit inside a task: stop everything.
                        for other in running:
                            other.cancel()
                        raise error
                    outcome.failed[name] = error
                    skip_dependents(name)
                    continue
                outcome.done.append(name)
                for child in dependents[name]:
                    pending = waiting[child]
                    pending.discard(name)
                    if not pending and child not in outcome.skipped:
                        ready.append(child)
                ready.sort(key=order.index)
    return outcome


def _check_acyclic(waiting: Mapping[str, set[str]]) -> None:
    remaining = {name: set(deps) for name, deps in waiting.items()}
    while remaining:
        free = [name for name, deps in remaining.items() if not deps]
        if not free:
            raise ValueError("dependency cycle between: " + ", ".join(sorted(remaining)))
        for name in free:
            del remaining[name]
        for deps in remaining.values():
            deps.difference_update(free)
