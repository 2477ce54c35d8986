"""Which executor runs jobs (`local` sandboxes or `skypilot` managed jobs), and whether it can.

`ServerSettings.executor` (`--executor`, `DUMONT_SERVER_EXECUTOR`) names it. SkyPilot is
usable when `sky` imports in the server's interpreter and SkyPilot's own credential check
(`sky.check.check`, run in this process, no API server) finds at least one enabled cloud.
The check takes seconds, so it runs once in a background thread when the server first asks;
until it ends, `skypilot_problem` says "checking". `/health` (capability `executor.<name>`,
and `executor.unusable` when the chosen one cannot run) and `GET /finetune/status` report it.

Test-only: `DUMONT_SERVER_SKY_MODULE` names a module (dotted name or a `.py` file) used
instead of `sky`; the tests point it at a fake of SkyPilot's SDK, since no cloud is reachable
from them. Never set it in production.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

from dumont_plan.server.context import AppState
from dumont_plan.server.provider.sky_outputs import setting_problem
from dumont_plan.server.settings import ServerSettings

EXECUTORS = ("local", "skypilot")
MAX_NODES = 16  # machines of one job (the local executor: ranks)
SKY_MODULE_VAR = "DUMONT_SERVER_SKY_MODULE"
NOT_INSTALLED = "skypilot is not installed (pip install 'dumont-plan[skypilot]')"
CHECKING = "SkyPilot's credential check (sky check) is still running"
_SERVICE = "executors.skypilot-check"
_LOCK = threading.Lock()


def load_sky() -> ModuleType | str:
    """SkyPilot's package (or the test fake named by `DUMONT_SERVER_SKY_MODULE`), or why not."""
    name = os.environ.get(SKY_MODULE_VAR) or "sky"
    try:
        if name.endswith(".py"):
            spec = importlib.util.spec_from_file_location("dumont_fake_sky", Path(name))
            if spec is None or spec.loader is None:
                return f"{SKY_MODULE_VAR}={name} is not a Python file"
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
        return importlib.import_module(name)
    except ImportError:
        return NOT_INSTALLED
    except Exception as exc:  # a broken installation: say what it raised
        return f"skypilot does not import: {type(exc).__name__}: {exc}"


def check_credentials(sky: ModuleType) -> str | None:
    """SkyPilot's own credential check; None when a cloud is enabled, else why not."""
    try:
        check = importlib.import_module("sky.check") if sky.__name__ == "sky" else sky.check
        result: dict[str, dict[str, list[str]]] = check.check(quiet=True)
    except Exception as exc:  # its own errors, e.g. a malformed ~/.sky/config.yaml
        return f"sky check failed: {type(exc).__name__}: {exc}"
    enabled = sorted({cloud for clouds in result.values() for cloud in clouds})
    if not enabled:
        return "sky check found no enabled cloud (set up credentials, then run `sky check`)"
    return None


class SkyCheck:
    """The result of loading SkyPilot and its credential check, computed once per server."""

    def __init__(self) -> None:
        self.problem: str | None = CHECKING
        self.clouds_checked = threading.Event()
        self.module: ModuleType | None = None
        threading.Thread(target=self._run, name="dumont-sky-check", daemon=True).start()

    def _run(self) -> None:
        try:
            loaded = load_sky()
            if isinstance(loaded, str):
                self.problem = loaded
                return
            self.module = loaded
            self.problem = check_credentials(loaded)
        finally:
            self.clouds_checked.set()


def sky_check(state: AppState) -> SkyCheck:
    with _LOCK:
        found = state.services.get(_SERVICE)
        if not isinstance(found, SkyCheck):
            found = state.services[_SERVICE] = SkyCheck()
        return found


def skypilot_problem(state: AppState) -> str | None:
    """Why SkyPilot cannot run work here (None: it can)."""
    return sky_check(state).problem


def executor_name(settings: ServerSettings) -> str:
    return settings.executor if settings.executor in EXECUTORS else "local"


def executor_info(state: AppState) -> dict[str, Any]:
    """`{name, available, reason}` of the executor this server runs jobs with."""
    name = executor_name(state.settings)
    if name == "local":
        return {"name": name, "available": True, "reason": None}
    problem = skypilot_problem(state)
    return {"name": name, "available": problem is None, "reason": problem}


def check_setting(settings: ServerSettings) -> str | None:
    """A problem with the executor setting or SkyPilot's outputs location, for the server's
    start (None: fine)."""
    if settings.executor in EXECUTORS:
        return setting_problem(settings)
    return (
        f"unknown executor {settings.executor!r} (DUMONT_SERVER_EXECUTOR or --executor);"
        f" use one of: {', '.join(EXECUTORS)}"
    )


def nodes_problem(settings: ServerSettings, num_nodes: int) -> str | None:
    """Why a job of `num_nodes` machines cannot run here (None: it can). SkyPilot renders
    `num_nodes` natively; the local executor runs that many ranks on this machine, each in a
    sandbox of its own (`provider.ranks`). Either way at most `MAX_NODES`, and a job of several
    nodes is billed per node."""
    if num_nodes > MAX_NODES:
        return f"num_nodes={num_nodes}: at most {MAX_NODES} machines per job"
    return None
