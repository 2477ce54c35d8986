"""`dumont plan` reads the job list in a forked reader while the CLI loads (cli/early.py).

What must hold: the plan is the same, the server sees the same requests (invariant 3), the
plan's own process never loads httpx when the reader answered everything, nothing is left
running, and every case the reader cannot serve falls back to the transport.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from benchmarks.bench_plan import seed
from dumont_plan.apply.observe import observe
from dumont_plan.cli import early
from dumont_plan.client.base import PROXY_VARS
from dumont_plan.client.jobs import PAGE_SIZE
from dumont_plan.state.ledger import Ledger, default_state_path, now_iso
from tests.support import LocalServer, SilentServer, UserSession, cli_env, new_user, run_cli

JOBS = 250  # three pages


def list_requests(server: LocalServer) -> int:
    counts: dict[str, int] = server.stats()["requests"]
    return sum(n for key, n in counts.items() if key.startswith("GET /api/v1/jobs"))


@pytest.fixture
def seeded(server: LocalServer, tmp_path: Path) -> tuple[UserSession, Path]:
    """A user with JOBS applied jobs and the spec folder whose ledger holds them."""
    user = new_user(server.url, "early")
    folder = tmp_path / "spec"
    folder.mkdir()
    seed(server, user.email, folder, JOBS)  # type: ignore[arg-type]
    return user, folder


def plan_json(env: dict[str, str], folder: Path) -> dict[str, Any]:
    done = run_cli(["plan", "--detailed-exitcode", "--output", "json"], env, cwd=folder)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_the_plan_and_its_requests_are_the_same_with_and_without_early_reads(
    server: LocalServer, seeded: tuple[UserSession, Path], tmp_path: Path
) -> None:
    user, folder = seeded
    env = cli_env(tmp_path / "home", server.url, user.token)
    (tmp_path / "home").mkdir()
    before = list_requests(server)
    with_reads = plan_json(env, folder)
    during = list_requests(server) - before
    before = list_requests(server)
    without = plan_json({**env, early.SWITCH: "0"}, folder)
    assert list_requests(server) - before == during == 3  # the pages, once each
    assert with_reads["changes"] == without["changes"]  # fingerprints of what was read too
    assert with_reads["summary"]["counts"] == {"noop": JOBS}


def test_the_plan_process_loads_no_httpx_when_the_reader_answered_everything(
    server: LocalServer, seeded: tuple[UserSession, Path], tmp_path: Path
) -> None:
    user, folder = seeded
    (tmp_path / "home").mkdir()
    env = cli_env(tmp_path / "home", server.url, user.token)
    probe = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('httpx loaded:', 'httpx' in sys.modules, file=sys.stderr))\n"
        "sys.argv = ['dumont', 'plan']\n"
        "from dumont_plan.cli.main import main\n"
        "sys.exit(main())\n"
    )
    for switch, loaded in (("1", False), ("0", True)):
        done = subprocess.run(
            [sys.executable, "-c", probe],
            env={**env, early.SWITCH: switch},
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "No changes" in done.stdout
        assert f"httpx loaded: {loaded}" in done.stderr, (switch, done.stderr)


class ListedBefore:
    """What observe takes from a Prefetch: lists read before the state was, from `since`."""

    def __init__(self, lists: dict[str, list[Any]], before: int, since: float) -> None:
        self.kinds = sorted(lists)
        self.before = before
        self.since = since
        self.lists = lists

    def result(self) -> dict[str, list[Any]]:
        return dict(self.lists)


def test_a_job_created_after_the_list_was_read_is_not_planned_as_gone(
    server: LocalServer, seeded: tuple[UserSession, Path]
) -> None:
    """Lists read before the state (early reads, Prefetch) may miss what an apply made in
    between: observe reads the ids of entries written since one by one, and only a 404
    means gone. An entry older than the list whose id it lacks is gone at once."""
    user, folder = seeded
    ledger = Ledger.load(default_state_path(folder), "scale")
    entries = list(ledger.state.resources.values())
    client = user.client
    before = client.transport.request_count
    since = time.time()
    listed = client.jobs.list_all()  # the list as it was before `newer` existed
    newer = client.jobs.create(name="scale-newer", command="true", gpu_type="A100")
    fresh = {"updated_at": now_iso()}
    old = {"updated_at": "2026-01-01T00:00:00Z"}
    state = ledger.state.resources
    state["job.newer"] = entries[0].model_copy(update={"remote_id": newer.id, **fresh})
    state["job.deleted"] = entries[1].model_copy(update={"remote_id": "job_0badc0de", **fresh})
    state["job.long-gone"] = entries[2].model_copy(update={"remote_id": "job_0ldc0de0", **old})
    reads = client.transport.request_count
    prefetched = ListedBefore({"job": listed}, before, since)
    observed = observe(client, ["job"], ledger=ledger.state, prefetched=prefetched)
    ids = {job.id for job in observed.objects("job")}
    assert newer.id in ids and len(ids) == JOBS + 1  # neither gone id
    assert client.transport.request_count - reads == 2  # newer and deleted: one GET each

    # The same list, read after the state: complete, so an id it lacks is gone at once.
    reads = client.transport.request_count
    observed = observe(client, ["job"], ledger=ledger.state)
    assert client.transport.request_count - reads == 3  # the pages only


def test_the_reader_hands_over_the_pages_the_server_sends(
    server: LocalServer, seeded: tuple[UserSession, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    user, folder = seeded
    monkeypatch.setenv("DUMONT_API_URL", server.url)
    monkeypatch.setenv("DUMONT_TOKEN", user.token)
    monkeypatch.delenv(early.SWITCH, raising=False)
    reads = early.start(["plan"], folder)
    assert reads is not None
    try:
        with user.http() as http:
            for offset in range(0, JOBS, PAGE_SIZE):
                params: dict[str, Any] = {"limit": PAGE_SIZE}
                if offset:
                    params["offset"] = offset
                answer = reads.take(early.JOBS_PATH, params, user.token)
                assert answer is not None and answer.is_json_ok
                direct = http.get(early.JOBS_PATH, params=params).json()
                assert json.loads(answer.body)["jobs"] == direct["jobs"]
                assert reads.take(early.JOBS_PATH, params, user.token) is None  # once
        # Not a page of the job list, or another token: the transport sends it.
        assert reads.take("/api/v1/instances/", {}, user.token) is None
        assert reads.take(early.JOBS_PATH, {"limit": PAGE_SIZE}, "another-token") is None
    finally:
        reads.close()
    with pytest.raises(ChildProcessError):
        os.waitpid(reads._pid, os.WNOHANG)  # stopped and reaped


def test_a_refused_token_is_answered_once(
    server: LocalServer, seeded: tuple[UserSession, Path], tmp_path: Path
) -> None:
    """The reader's 401 is the transport's answer: the same error, and not asked twice."""
    _, folder = seeded
    (tmp_path / "home").mkdir()
    env = cli_env(tmp_path / "home", server.url, "not-a-valid-token")
    errors = {}
    for switch in ("1", "0"):
        before = list_requests(server)
        done = run_cli(["plan"], {**env, early.SWITCH: switch}, cwd=folder)
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr
        assert done.stderr.startswith("Error:") and "401" in done.stderr, done.stderr
        assert list_requests(server) - before == 1
        assert done.stderr.count("log in again") == 1, done.stderr  # the hint, once
        errors[switch] = done.stderr
    assert errors["1"] == errors["0"]


@pytest.mark.parametrize(
    ("argv", "env", "spec"),
    [
        (["apply"], {}, "jobs:\n"),  # another command
        (["plan", "--help"], {}, "jobs:\n"),
        (["plan"], {"DUMONT_EARLY_READS": "0"}, "jobs:\n"),
        (["plan"], {"HTTPS_PROXY": "http://127.0.0.1:9"}, "jobs:\n"),
        (["plan"], {}, "instances:\n  a: {}\n"),  # no job list to read
        (["plan"], {}, "jobs: {}\n"),  # an empty section: the plan may not list jobs
        (["plan"], {}, "jobs:\n  # none yet\ninstances: {}\n"),
        (["plan"], {"DUMONT_API_URL": ""}, "jobs:\n"),  # the embedded server
        (["plan", "-f", "."], {}, "jobs:\n"),  # a folder: left to the loader
        (["--backend-config", "a=b", "plan"], {}, "jobs:\n"),
    ],
)
def test_nothing_starts_when_the_reads_do_not_apply(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    env: dict[str, str],
    spec: str,
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("DUMONT_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("DUMONT_TOKEN", "some-token")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(early.SWITCH, raising=False)
    for name, value in env.items():
        if value:
            monkeypatch.setenv(name, value)
        else:
            monkeypatch.delenv(name)
    (tmp_path / "dumont.yaml").write_text(f"version: 1\nproject: p\n{spec}")
    assert early.start(argv, tmp_path) is None


def processes_with(marker: str) -> list[int]:
    """The pids whose environment holds `marker` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_the_reader_does_not_outlive_a_plan_that_stopped_before_reading(
    tmp_path: Path, silent: SilentServer
) -> None:
    """A server that never answers keeps the reader waiting; a spec error ends the plan
    before it asks for anything, and the reader goes with it."""
    (tmp_path / "home").mkdir()
    (tmp_path / "dumont.yaml").write_text(
        "version: 1\nproject: p\njobs:\n  a: {command: 1, nope: 2}\n"
    )
    marker = f"DUMONT_TEST_MARK={uuid.uuid4().hex}"
    env = {**cli_env(tmp_path / "home", silent.url, "some-token"), **dict([marker.split("=")])}
    done = run_cli(["plan"], env, cwd=tmp_path, timeout=60)
    assert done.returncode == 1 and "nope" in done.stderr and "Traceback" not in done.stderr
    assert silent.accepted, "the reader never connected"
    assert processes_with(marker) == []


def test_the_readers_copies_of_the_clients_settings_are_equal() -> None:
    """cli/early.py cannot import these (their modules load pydantic or httpx): it copies them."""
    from dumont_plan import __version__
    from dumont_plan.cli.session import HTTP_TIMEOUT
    from dumont_plan.client.base import USER_AGENT
    from dumont_plan.client.jobs import COLLECTION
    from dumont_plan.loader.inputs import DEFAULT_FILES

    assert early.PAGE_SIZE == PAGE_SIZE
    assert early.PROXY_VARS == PROXY_VARS
    assert early.HTTP_TIMEOUT == HTTP_TIMEOUT
    assert early.JOBS_PATH == COLLECTION
    assert early._SPEC_NAMES == DEFAULT_FILES
    assert f"dumont-plan/{__version__}" == USER_AGENT  # as the reader builds it


def test_the_reader_dies_with_a_killed_plan(tmp_path: Path, silent: SilentServer) -> None:
    """SIGKILL runs no atexit: the reader, waiting on a server that never answers, is killed
    by the kernel when the plan's process dies (Linux)."""
    (tmp_path / "home").mkdir()
    (tmp_path / "dumont.yaml").write_text('version: 1\nproject: p\njobs:\n  a: {command: "true"}\n')
    marker = f"DUMONT_TEST_MARK={uuid.uuid4().hex}"
    env = {**cli_env(tmp_path / "home", silent.url, "some-token"), **dict([marker.split("=")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dumont_plan", "plan"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not silent.accepted and time.monotonic() < deadline:
        time.sleep(0.02)  # the reader is connected and waits for an answer
    assert len(processes_with(marker)) == 2
    proc.kill()
    proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with(marker) == []


def test_the_reader_verifies_tls_as_httpx_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SSL_CERT_FILE, else SSL_CERT_DIR, else certifi's bundle (httpx's own order)."""
    import certifi

    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    bundled = early._tls_context().cert_store_stats()["x509_ca"]
    assert bundled > 0
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))  # an empty folder: no CA at all
    assert early._tls_context().cert_store_stats()["x509_ca"] == 0
    one = tmp_path / "one.pem"
    text = Path(certifi.where()).read_text()
    one.write_text(text[: text.index("-----END CERTIFICATE-----") + 26])
    monkeypatch.setenv("SSL_CERT_FILE", str(one))  # wins over the folder
    assert early._tls_context().cert_store_stats()["x509_ca"] == 1


class OddPages(BaseHTTPRequestHandler):
    """A server whose 200 JSON answers to the job list are odd: `body` for every page."""

    body = b""
    status = 200
    paths: ClassVar[list[str]] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        OddPages.paths.append(self.path)
        page = self.path.startswith(early.JOBS_PATH)
        body = OddPages.body if page else b'{"offers": []}'
        self.send_response(OddPages.status if page else 200)
        self.send_header("Retry-After", "0")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def odd() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), OddPages)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("status", "body", "asked"),
    [
        (200, b'{"jobs": [], "total": 250}', 1),  # a short first page: the client asks no more
        (200, b"{not json", 1),  # not JSON: the same one-line error as without the reader
        (200, b"", 1),
        (503, b'{"detail": "busy"}', 4),  # the reader's 503 is the transport's first attempt
        (404, b"<html>not here</html>", 1),  # not the API: said once, asked once
    ],
)
def test_odd_pages_get_the_same_requests_and_answer_as_without_the_reader(
    tmp_path: Path, odd: str, status: int, body: bytes, asked: int
) -> None:
    OddPages.status, OddPages.body = status, body
    (tmp_path / "home").mkdir()
    (tmp_path / "dumont.yaml").write_text('version: 1\nproject: p\njobs:\n  a: {command: "true"}\n')
    seen = {}
    for switch in ("1", "0"):
        OddPages.paths = []
        env = {**cli_env(tmp_path / "home", odd, "some-token"), early.SWITCH: switch}
        done = run_cli(["plan"], env, cwd=tmp_path)
        assert "Traceback" not in done.stderr
        pages = [p for p in OddPages.paths if p.startswith(early.JOBS_PATH)]
        seen[switch] = (done.returncode, done.stderr, pages)
    assert seen["1"] == seen["0"]
    assert seen["1"][2] == [early.JOBS_PATH + "?limit=100"] * asked


def test_a_page_never_answered_is_the_transports_timeout_not_asked_again(
    tmp_path: Path, silent: SilentServer
) -> None:
    """The reader's GET that timed out is the plan's: one GET, one timeout, the same error."""
    (tmp_path / "home").mkdir()
    (tmp_path / "dumont.yaml").write_text('version: 1\nproject: p\njobs:\n  a: {command: "true"}\n')
    probe = (  # both timeouts shortened to 2 s, in the plan's process before it starts
        "import sys\n"
        "import dumont_plan.cli.early as early\n"
        "import dumont_plan.cli.session as session\n"
        "early.HTTP_TIMEOUT = session.HTTP_TIMEOUT = 2.0\n"
        "sys.argv = ['dumont', 'plan']\n"
        "from dumont_plan.cli.main import main\n"
        "sys.exit(main())\n"
    )
    errors = {}
    for switch in ("1", "0"):
        accepted = len(silent.accepted)
        done = subprocess.run(
            [sys.executable, "-c", probe],
            env={**cli_env(tmp_path / "home", silent.url, "some-token"), early.SWITCH: switch},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1 and "did not answer" in done.stderr, done.stderr
        assert len(silent.accepted) - accepted == 1, switch
        errors[switch] = done.stderr.replace(silent.url, "URL")
    assert errors["1"] == errors["0"]
