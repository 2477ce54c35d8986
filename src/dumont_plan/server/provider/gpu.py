"""GPU utilisation of an instance's processes through NVML, when this machine has one.

`pynvml` (the `nvidia-ml-py` package) is optional: without it, without a driver, or when no GPU
process belongs to the instance, `utilisation` answers None and the caller falls back to the
CPU share of the instance's process tree. NVML is initialised once per process; a failure is
remembered, so a machine without a GPU pays for one import attempt only.
"""

from __future__ import annotations

import importlib
import threading
from pathlib import Path
from typing import Any

_guard = threading.Lock()
_nvml: Any = None
_tried = False


def _load() -> Any:
    global _nvml, _tried
    with _guard:
        if not _tried:
            _tried = True
            try:
                module = importlib.import_module("pynvml")
                module.nvmlInit()
                _nvml = module
            except Exception:  # no package, no driver, no device: no NVML
                _nvml = None
        return _nvml


def _session_pids(leader: int) -> set[int]:
    """Pids in the leader's session (the instance's process tree, as usage.py counts it)."""
    found = {leader}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                raw = (entry / "stat").read_text()
            except OSError:
                continue
            fields = raw[raw.rfind(")") + 2 :].split()
            if len(fields) > 3 and int(fields[3]) == leader:
                found.add(int(entry.name))
    return found


def utilisation(leader: int) -> float | None:
    """The highest recent SM utilisation (%) of a GPU process of the instance, or None."""
    nvml = _load()
    if nvml is None:
        return None
    try:
        pids = _session_pids(leader)
        best: float | None = None
        for index in range(int(nvml.nvmlDeviceGetCount())):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            running = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
            if not any(int(p.pid) in pids for p in running):
                continue
            try:
                samples = nvml.nvmlDeviceGetProcessUtilization(handle, 0)
                values = [float(s.smUtil) for s in samples if int(s.pid) in pids]
            except Exception:  # older drivers: the device's utilisation instead
                values = [float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)]
            if values:
                best = max([*values, best or 0.0])
        return best
    except Exception:  # NVML errors (a device lost): no GPU figure this pass
        return None
