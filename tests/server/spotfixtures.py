"""Helpers for the spot tests: a source instance with a workspace, templates, deployments."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.server.instancefixtures import (
    INSTANCES,
    actual,
    create,
    delete_all,
    reliable_offer,
    sandbox_tag,
    wait_for,
    workspace,
)
from tests.support import LocalServer, UserSession, new_user

SPOT = "/api/v1/spot"
HOOK_PRICE = "/api/v1/_local/market/price"
# A workload that stays up: its processes must die with an interruption.
ONSTART = "echo booted >> boot.log; exec sleep 600"


def owner_fixture(server: LocalServer) -> Iterator[UserSession]:
    """A fresh user of `server`; afterwards its spot deployments and instances are deleted."""
    session = new_user(server.url)
    yield session
    with session.http() as http:
        for dep in http.get(f"{SPOT}/instances").json():
            http.delete(f"{SPOT}/instance/{dep['instance_id']}")
        delete_all(http)


def running_instance(
    server: LocalServer, http: httpx.Client, files: dict[str, str], **body: Any
) -> dict[str, Any]:
    """A running instance of the user, whose workspace holds `files` (path -> text)."""
    offer = reliable_offer(http)
    created = create(http, offer["id"], **body)
    instance = wait_for(http, created["id"], actual("running"))
    write_files(server, int(instance["id"]), files)
    return instance


def write_files(server: LocalServer, instance_id: int, files: dict[str, str]) -> None:
    root = workspace(server, instance_id)
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def read_file(server: LocalServer, instance_id: int, relative: str) -> str | None:
    path = workspace(server, instance_id) / relative
    return path.read_text(encoding="utf-8") if path.is_file() else None


def template_of(
    server: LocalServer, http: httpx.Client, files: dict[str, str], **body: Any
) -> dict[str, Any]:
    instance = running_instance(server, http, files, onstart_cmd=ONSTART)
    response = http.post(f"{SPOT}/template/{instance['id']}", json=body)
    assert response.status_code == 200, response.text
    template: dict[str, Any] = response.json()
    return template


def deploy(http: httpx.Client, template_id: str, **body: Any) -> dict[str, Any]:
    response = http.post(f"{SPOT}/deploy", json={"template_id": template_id, **body})
    assert response.status_code == 200, response.text
    deployed: dict[str, Any] = response.json()
    return deployed


def status(http: httpx.Client, instance_id: int) -> dict[str, Any]:
    response = http.get(f"{SPOT}/status/{instance_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_status(
    http: httpx.Client, instance_id: int, check: Any, timeout: float = 60.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = status(http, instance_id)
        if check(body):
            return body
        assert time.monotonic() < deadline, f"spot instance {instance_id} stuck: {body}"
        time.sleep(0.05)


def instance_gone(http: httpx.Client, instance_id: int) -> bool:
    return http.get(f"{INSTANCES}/{instance_id}").status_code == 404


def tagged_processes(instance_id: int, server: LocalServer) -> list[int]:
    """Host pids of the processes of `server`'s instance `instance_id` (by its sandbox tag)."""
    tag = sandbox_tag(instance_id, server)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if tag in (entry / "environ").read_bytes().split(b"\0"):
                stat = (entry / "stat").read_text()
                if stat[stat.rfind(")") + 2 :].split()[0] not in ("Z", "X"):
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def spike(http: httpx.Client, offer_id: int, price: float | None, seconds: float = 120) -> None:
    """Set (None: clear) the spot price of an offer's machine through the test hook."""
    response = http.post(
        HOOK_PRICE, json={"offer_id": offer_id, "price": price, "seconds": seconds}
    )
    assert response.status_code == 200, response.text
