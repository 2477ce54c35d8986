"""Run a DAG of tasks with bounded parallelism; a failure skips its dependents only.

    outcome = run_dag({"a": [], "b": ["a"], "c": []}, work, parallelism=8)
    outcome.done, outcome.failed, outcome.skipped

A task starts once every task it depends on is done; up to `parallelism` run at once in a
thread pool. When a task fails (its `work` raised), every task depending on it, transitively,
is skipped and never started, while independent tasks complete. Dependencies on names that are
not tasks are treated as satisfied (e.g. a resource left out by `--target`).

Ready tasks wait in `spec.graph.ReadyQueue` (a heap keyed by their position in `deps`), so
scheduling N tasks costs O((N + edges) log N), not a re-sort of the ready list per task.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from dumont_plan.errors import CycleError
from dumont_plan.spec.graph import ReadyQueue, reverse


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
    on_abort: Callable[[], None] | None = None,
) -> DagOutcome:
    """Run `work(name)` for every name of `deps` in dependency order (see the module doc).

    `on_skip(name, cause)` is called for each skipped task as soon as it is known. Tasks are
    started in the order of `deps` among those that are ready, so the order is stable.
    On KeyboardInterrupt (or any other BaseException) no task is started any more and
    `on_abort()` is called before the running ones are waited for, so they can wind down.
    Raises ValueError naming the members of a dependency cycle (the plan rejects cycles
    before this point).
    """
    if parallelism < 1:
        raise ValueError("parallelism must be at least 1")
    run = _Run(deps, work, on_skip)
    with ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="apply") as pool:
        try:
            run.loop(pool, parallelism)
        except BaseException:
            if on_abort is not None:
                on_abort()
            raise
    return run.outcome


class _Run:
    def __init__(
        self,
        deps: Mapping[str, Sequence[str]],
        work: Callable[[str], None],
        on_skip: Callable[[str, str], None] | None,
    ) -> None:
        self.work = work
        self.on_skip = on_skip
        graph = {name: [d for d in needs if d != name] for name, needs in deps.items()}
        self.position = {name: index for index, name in enumerate(graph)}
        try:
            self.ready = ReadyQueue(graph)  # unknown dependencies are left out: satisfied
        except CycleError as exc:
            between = ", ".join(sorted(set(exc.cycle)))
            raise ValueError(f"dependency cycle between: {between}") from exc
        self.dependents = reverse(graph)
        self.settled: set[str] = set()  # done, failed or skipped
        self.outcome = DagOutcome()
        self.running: dict[Future[None], str] = {}

    def loop(self, pool: ThreadPoolExecutor, parallelism: int) -> None:
        while self.ready or self.running:
            while self.ready and len(self.running) < parallelism:
                name = self.ready.pop()
                self.running[pool.submit(self.work, name)] = name
            finished, _ = wait(list(self.running), return_when=FIRST_COMPLETED)
            for future in sorted(finished, key=lambda f: self.position[self.running[f]]):
                self.finished(future)

    def finished(self, future: Future[None]) -> None:
        name = self.running.pop(future)
        error = future.exception()
        self.settled.add(name)
        if error is not None:
            if not isinstance(error, Exception):
                raise error  # KeyboardInterrupt/SystemExit inside a task: stop everything
            self.outcome.failed[name] = error
            self.skip_dependents(name)
            return
        self.outcome.done.append(name)
        self.ready.done(name)

    def skip_dependents(self, root: str) -> None:
        """Skip everything that needs `root`, nearest first (they never become ready)."""
        queue = deque(self.dependents[root])
        while queue:
            name = queue.popleft()
            if name in self.settled:
                continue
            self.settled.add(name)
            self.outcome.skipped[name] = root
            if self.on_skip is not None:
                self.on_skip(name, root)
            queue.extend(self.dependents[name])
