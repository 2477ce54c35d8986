"""Background loop: job and fine-tune supervision, instance lifecycle (later serverless, spot)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from dumont_plan.server.context import AppState
from dumont_plan.server.provider.endpoints import reconcile_endpoints
from dumont_plan.server.provider.finetunes import reconcile_finetunes
from dumont_plan.server.provider.instances import reconcile_instances
from dumont_plan.server.provider.jobs import reconcile_jobs
from dumont_plan.server.provider.schedules import reconcile_schedules
from dumont_plan.server.provider.serverless import reconcile_serverless
from dumont_plan.server.provider.spot_failover import reconcile_spot

log = logging.getLogger("dumont_plan.server.reconciler")

TICKS: list[Callable[[AppState], None]] = [
    reconcile_schedules,  # before the jobs' pass: a job due now is started in this pass
    reconcile_jobs,
    reconcile_instances,
    reconcile_serverless,  # after the instances' pass: it reads their fresh usage samples
    reconcile_spot,
    reconcile_endpoints,
    reconcile_finetunes,
]


def run_once(state: AppState) -> None:
    for tick in TICKS:
        try:
            tick(state)
        except Exception:  # a failing pass must not stop the loop
            log.exception("reconciler pass %s failed", tick.__name__)


class Reconciler:
    def __init__(self, state: AppState) -> None:
        self.state = state
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pass = threading.Lock()  # one pass at a time: the loop's or a test hook's

    def run_once(self) -> None:
        """One pass now, after any pass in progress (the loop's passes wait for it too)."""
        with self._pass:
            run_once(self.state)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="reconciler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.state.settings.reconcile_interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
