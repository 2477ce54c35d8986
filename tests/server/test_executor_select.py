"""Choosing the executor: `/health` and `GET /finetune/status` say which one runs jobs and, when
SkyPilot cannot run them, why — the result of SkyPilot's own credential check (a fake SDK: no
cloud is reachable here), or that it is not installed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import LocalServer, new_user

FAKE_SKY = Path(__file__).resolve().parent / "fake_sky.py"


def executor_of(url: str, timeout: float = 20) -> dict[str, Any]:
    """`/health`'s executor once SkyPilot's check has ended (it runs in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        body = httpx.get(url + "/health", timeout=5).json()
        info: dict[str, Any] = body["executor"]
        if "still running" not in str(info.get("reason")) or time.monotonic() > deadline:
            assert f"executor.{info['name']}" in body["capabilities"]
            return info
        time.sleep(0.05)


def test_local_is_the_default(server: LocalServer) -> None:
    assert executor_of(server.url) == {"name": "local", "available": True, "reason": None}


def test_skypilot_without_credentials_says_what_sky_check_found(tmp_path: Path) -> None:
    env = {"DUMONT_SERVER_SKY_MODULE": str(FAKE_SKY), "FAKE_SKY_DIR": str(tmp_path / "sky")}
    srv = LocalServer(tmp_path / "cp", env=env, extra_args=["--executor", "skypilot"]).start()
    try:
        info = executor_of(srv.url)
        assert info["name"] == "skypilot" and info["available"] is False
        assert "sky check found no enabled cloud" in info["reason"]
        with new_user(srv.url).http() as http:
            status = http.get("/api/v1/finetune/status").json()
        assert status["executor"] == info
        assert "sky check found no enabled cloud" in " ".join(
            status["executors"]["skypilot"]["reasons"]
        )
    finally:
        srv.stop()


def test_skypilot_with_an_enabled_cloud_is_usable(tmp_path: Path) -> None:
    sky_dir = tmp_path / "sky"
    sky_dir.mkdir()
    (sky_dir / "clouds.json").write_text(json.dumps({"default": {"aws": ["compute"]}}))
    env = {
        "DUMONT_SERVER_SKY_MODULE": str(FAKE_SKY),
        "FAKE_SKY_DIR": str(sky_dir),
        "DUMONT_SERVER_EXECUTOR": "skypilot",
    }
    srv = LocalServer(tmp_path / "cp", env=env).start()
    try:
        assert executor_of(srv.url) == {"name": "skypilot", "available": True, "reason": None}
    finally:
        srv.stop()


def test_skypilot_not_installed_says_so(tmp_path: Path) -> None:
    env = {"DUMONT_SERVER_SKY_MODULE": "dumont_no_such_sky_module"}
    srv = LocalServer(tmp_path / "cp", env=env, extra_args=["--executor", "skypilot"]).start()
    try:
        info = executor_of(srv.url)
        assert info["available"] is False
        assert info["reason"].startswith("skypilot is not installed")
    finally:
        srv.stop()


@pytest.mark.parametrize("value", ["kubernetes", "SkyPilot"])
def test_an_unknown_executor_refuses_to_start(tmp_path: Path, value: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dumont_plan.server", "--data-dir", str(tmp_path)],
        env={"DUMONT_SERVER_EXECUTOR": value, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"unknown executor {value!r}" in done.stderr
    assert "local, skypilot" in done.stderr
