"""GPU utilisation through NVML (provider/gpu.py). This machine has no GPU, so `pynvml` is
replaced by a stand-in module that answers like NVML for one device; everything else (the
instance's process tree read from /proc, the fallbacks) is real."""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from dumont_plan.server.provider import gpu


def fake_nvml(processes: list[int], samples: list[tuple[int, float]], fail: bool = False) -> Any:
    module: Any = types.ModuleType("pynvml")

    def init() -> None:
        if fail:
            raise RuntimeError("NVML Shared Library Not Found")

    module.nvmlInit = init
    module.nvmlDeviceGetCount = lambda: 1
    module.nvmlDeviceGetHandleByIndex = lambda index: f"gpu{index}"
    module.nvmlDeviceGetComputeRunningProcesses = lambda handle: [
        SimpleNamespace(pid=p) for p in processes
    ]
    module.nvmlDeviceGetProcessUtilization = lambda handle, since: [
        SimpleNamespace(pid=p, smUtil=u) for p, u in samples
    ]
    return module


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    def install(module: Any) -> None:
        monkeypatch.setitem(sys.modules, "pynvml", module)
        monkeypatch.setattr(gpu, "_tried", False)
        monkeypatch.setattr(gpu, "_nvml", None)

    yield install
    monkeypatch.setattr(gpu, "_tried", False)
    monkeypatch.setattr(gpu, "_nvml", None)


def test_utilisation_of_the_instances_gpu_processes(nvml: Any) -> None:
    me = os.getpid()
    nvml(fake_nvml([me, 999_999], [(me, 73.0), (999_999, 99.0)]))
    assert gpu.utilisation(me) == 73.0  # another process's 99 % is not the instance's


def test_no_gpu_process_of_the_instance_is_no_figure(nvml: Any) -> None:
    nvml(fake_nvml([999_999], [(999_999, 99.0)]))
    assert gpu.utilisation(os.getpid()) is None


def test_without_a_driver_nvml_is_tried_once(nvml: Any) -> None:
    nvml(fake_nvml([os.getpid()], [(os.getpid(), 50.0)], fail=True))
    assert gpu.utilisation(os.getpid()) is None
    sys.modules["pynvml"] = fake_nvml([os.getpid()], [(os.getpid(), 50.0)])
    assert gpu.utilisation(os.getpid()) is None  # the failure is remembered
