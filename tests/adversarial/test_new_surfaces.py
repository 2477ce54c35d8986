"""The evening's new surfaces as an attacker would try them, two real users over loopback:
`instance exec` (a command in a running instance) must not reach the control plane's files or
another user's sandboxes, snapshots or uploads; nor read the control plane's environment."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.server.instancefixtures import INSTANCES, actual, create, reliable_offer
from tests.server.instancefixtures import wait_for as wait_for_instance
from tests.support import LocalServer, UserSession

LEAK = "LEAKED"


def try_read(path: str) -> str:
    return f'if head -c 64 "{path}" >/dev/null 2>&1; then echo "{LEAK} {path}"; fi'


def try_list(path: str) -> str:
    return f'if ls "{path}" >/dev/null 2>&1; then echo "{LEAK} ls {path}"; fi'


def test_instance_exec_cannot_reach_the_control_planes_data(
    server: LocalServer, user: UserSession
) -> None:
    data: Path = server.data_dir
    reads = [data / "jwt-secret", data / "dumont.sqlite3"]
    lists = [data, data / "sandboxes", data / "snapshots", data / "uploads", data / "finetunes"]
    probes = [*(try_read(str(p)) for p in reads), *(try_list(str(p)) for p in lists)]
    probes += [try_read("/proc/1/environ"), "echo done"]
    command = "; ".join(probes)
    with user.http() as http:
        iid = create(http, reliable_offer(http)["id"], onstart_cmd="sleep 300")["id"]
        wait_for_instance(http, iid, actual("running"), timeout=120)
        answer = http.post(f"{INSTANCES}/{iid}/exec", json={"command": command}, timeout=60)
        http.delete(f"{INSTANCES}/{iid}")
    assert answer.status_code == 200, answer.text
    output = answer.json()["output"]
    assert "done" in output and LEAK not in output, output


def test_a_state_document_not_in_utf8_is_a_422_not_a_500(user: UserSession) -> None:
    """json.loads reads UTF-16 and UTF-32 bodies too; the document is stored as UTF-8 text."""
    body = '{"version": 4, "serial": 1, "lineage": "x"}'.encode("utf-16")
    with user.http() as http:
        answer = http.post("/api/v1/state/adv-utf16", content=body)
        lock_info = '{"ID": "a"}'.encode("utf-32")
        lock = http.request("LOCK", "/api/v1/state/adv-utf16", content=lock_info)
    assert answer.status_code == 422, answer.text
    assert "UTF-8" in answer.text
    assert lock.status_code == 422 and "UTF-8" in lock.text, lock.text


def test_a_non_ascii_agent_token_is_a_401_not_a_500(server: LocalServer) -> None:
    """hmac.compare_digest refuses str with non-ASCII characters (a TypeError)."""
    token = "30000001.caf\xe9".encode("latin-1")
    answer = httpx.post(
        f"{server.url}/api/v1/agent/status",
        headers=[(b"X-Dumont-Agent-Token", token)],
        json={"instance_id": 30000001, "gpu_utilization": 1},
        timeout=30,
    )
    assert answer.status_code == 401, answer.text


DEEP = b"[" * 100_000


def test_a_dataset_nested_too_deeply_is_a_422_not_a_500(user: UserSession) -> None:
    """json.loads raises RecursionError (not a ValueError) on deep nesting."""
    with user.http() as http:
        for name, data in (("deep.jsonl", DEEP + b"\n"), ("deep.json", b"[" + DEEP)):
            answer = http.post("/api/v1/finetune/jobs/upload-dataset", files={"file": (name, data)})
            assert answer.status_code == 422, answer.text
            assert "nested" in answer.text


def test_json_bodies_nested_too_deeply_are_a_422_not_a_500(user: UserSession) -> None:
    with user.http() as http:
        state = http.post("/api/v1/state/adv-deep", content=DEEP)
        lock = http.request("LOCK", "/api/v1/state/adv-deep", content=b"[" * 5000)
        create = http.post(
            "/api/v1/instances", content=DEEP, headers={"Content-Type": "application/json"}
        )
    assert state.status_code == 422, state.text
    assert lock.status_code == 422, lock.text
    assert create.status_code == 422 and "nested too deeply" in create.text, create.text


def test_a_webhook_url_with_a_password_is_refused(user: UserSession) -> None:
    """A password in the URL would be stored in clear and shown back (policy, delivery log);
    the signature (webhook_secret) is how a receiver authenticates deliveries."""
    with user.http() as http:
        iid = create(http, reliable_offer(http)["id"], onstart_cmd="sleep 300")["id"]
        answer = http.post(
            f"/api/v1/serverless/enable/{iid}",
            json={"mode": "fast", "webhook_url": "https://hook:s3cr3t-pw@example.com/in"},
        )
        shown = http.get(f"/api/v1/serverless/status/{iid}").text
        http.delete(f"{INSTANCES}/{iid}")
    assert answer.status_code == 422, answer.text
    assert "s3cr3t-pw" not in answer.text and "s3cr3t-pw" not in shown


def test_a_422_never_echoes_a_urls_password(user: UserSession) -> None:
    """A field refused for another reason (an ftp:// URL) is echoed, but not its password."""
    with user.http() as http:
        answer = http.post(
            "/api/v1/serverless/enable/30000001",
            json={"mode": "fast", "webhook_url": "ftp://hook:s3cr3t-pw@example.com/in"},
        )
    assert answer.status_code == 422, answer.text
    assert "s3cr3t-pw" not in answer.text


def test_one_user_cannot_hold_every_request_thread_with_exec(
    server: LocalServer, user: UserSession
) -> None:
    """Each exec holds a request thread while its command runs (up to 600 s): a user's
    commands running at once are capped (429 beyond), so others' requests keep an answer."""
    import concurrent.futures
    import time

    from dumont_plan.server.provider.instance_exec import MAX_RUNNING_PER_USER
    from tests.server.instancefixtures import workspace

    with user.http() as http:
        iid = create(http, reliable_offer(http)["id"], onstart_cmd="sleep 300")["id"]
        wait_for_instance(http, iid, actual("running"), timeout=120)
        folder = workspace(server, iid)
        gate = (
            'mktemp "$WORKSPACE/started-XXXXXX"; '
            'while [ ! -f "$WORKSPACE/go" ]; do sleep 0.05; done; echo out'
        )

        def run() -> httpx.Response:
            with user.http() as own:
                return own.post(f"{INSTANCES}/{iid}/exec", json={"command": gate}, timeout=120)

        with concurrent.futures.ThreadPoolExecutor(MAX_RUNNING_PER_USER) as pool:
            held = [pool.submit(run) for _ in range(MAX_RUNNING_PER_USER)]
            deadline = time.monotonic() + 60
            while len(list(folder.glob("started-*"))) < MAX_RUNNING_PER_USER:
                assert time.monotonic() < deadline, "the commands did not start"
                time.sleep(0.05)
            extra = http.post(f"{INSTANCES}/{iid}/exec", json={"command": "echo more"})
            (folder / "go").write_text("")
            answers = [f.result() for f in held]
        http.delete(f"{INSTANCES}/{iid}")
    assert extra.status_code == 429, extra.text
    assert "running" in extra.json()["error"]
    assert [a.status_code for a in answers] == [200] * MAX_RUNNING_PER_USER
