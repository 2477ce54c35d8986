"""Test data for the Jobs tests: a tiny Hugging Face hub, a local git repo, a wheel, polling.

Everything is made on this machine at test time; nothing is fetched from the network.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import subprocess
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from tests.support import LocalServer, UserSession

FINISHED = {"completed", "failed", "cancelled", "timeout"}
JOBS = "/api/v1/jobs/"


def create_job(user: UserSession, **fields: Any) -> dict[str, Any]:
    with user.http() as http:
        response = http.post(JOBS, json=fields)
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


def get_job(user: UserSession, job_id: str) -> dict[str, Any]:
    with user.http() as http:
        response = http.get(f"{JOBS}{job_id}")
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


def logs(user: UserSession, job_id: str, tail: int | None = None) -> str:
    params = {} if tail is None else {"tail": tail}
    with user.http() as http:
        response = http.get(f"{JOBS}{job_id}/logs", params=params)
    assert response.status_code == 200, response.text
    assert response.json()["job_id"] == job_id
    return str(response.json()["logs"])


def wait_for(
    user: UserSession, job_id: str, statuses: set[str] | str, timeout: float = 60
) -> dict[str, Any]:
    """Poll the job until its status is in `statuses` (a finished job that is not: fail)."""
    wanted = {statuses} if isinstance(statuses, str) else statuses
    deadline = time.monotonic() + timeout
    job = get_job(user, job_id)
    while time.monotonic() < deadline:
        job = get_job(user, job_id)
        if job["status"] in wanted:
            return job
        if job["status"] in FINISHED:
            raise AssertionError(f"job ended {job['status']}, wanted {wanted}: {job}")
        time.sleep(0.05)
    raise AssertionError(f"job still {job['status']} after {timeout}s, wanted {wanted}")


# A command waits here until the test calls `open_gate` (at most 60 s), so a test can look at a
# running job without racing its end.
GATE = 'for _ in $(seq 1200); do [ -f "$DUMONT_WORKSPACE/.gate" ] && break; sleep 0.05; done'


def open_gate(server: LocalServer, job_id: str) -> None:
    (job_dir(server, job_id) / "workspace" / ".gate").touch()


class Counter:
    """Numbers 1, 2, 3… per key over loopback HTTP: how a job counts its own attempts (each
    attempt has a fresh workspace, and a sandbox sees nothing else of this machine)."""

    def __init__(self) -> None:
        counts: dict[str, int] = {}
        lock = threading.Lock()
        self.counts = counts

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                with lock:
                    counts[self.path] = counts.get(self.path, 0) + 1
                    body = str(counts[self.path]).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def shell(self, var: str = "n") -> str:
        """Shell that sets `$var` to the next number of a fresh key."""
        url = f"{self.url}/{uuid.uuid4().hex}"
        fetch = f"import urllib.request; print(urllib.request.urlopen('{url}').read().decode())"
        return f'{var}=$(python -c "{fetch}")'

    def total(self) -> int:
        """How many numbers were handed out so far."""
        return sum(self.counts.values())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_until(predicate: Any, timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def job_dir(server: LocalServer, job_id: str) -> Path:
    return server.data_dir / "sandboxes" / "jobs" / job_id


def runner_state(server: LocalServer, job_id: str) -> dict[str, Any]:
    state: dict[str, Any] = json.loads((job_dir(server, job_id) / "state.json").read_text())
    return state


def process_alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Members may all be zombies waiting for their parent: look at them.
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                fields = stat[stat.rfind(")") + 2 :].split()
                if int(fields[2]) == pgid and fields[0] not in "ZX":
                    return True
    return False


def all_files_text(folder: Path) -> str:
    """Every file under `folder`, as text (for secret-leak checks)."""
    chunks = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            chunks.append(path.read_bytes().decode("utf-8", errors="replace"))
    return "\n".join(chunks)


# -- git ----------------------------------------------------------------------------------------


def make_git_repo(path: Path, extra_files: dict[str, str] | None = None) -> str:
    """A local repo with run.sh (+ `extra_files`) on `main`, another run.sh on `feature`.

    Returns its file:// URL.
    """
    path.mkdir(parents=True)

    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=path,
            check=True,
            capture_output=True,
        )

    git("init", "-q", "-b", "main")
    (path / "run.sh").write_text('echo "from git main: $(basename "$PWD")"\n')
    for name, text in (extra_files or {}).items():
        (path / name).write_text(text)
    git("add", ".")
    git("commit", "-q", "-m", "main")
    git("checkout", "-q", "-b", "feature")
    (path / "run.sh").write_text('echo "from git feature"\n')
    git("commit", "-q", "-am", "feature")
    git("checkout", "-q", "main")
    return path.as_uri()


# -- wheel --------------------------------------------------------------------------------------


def build_wheel(folder: Path, name: str = "dumont_tinypkg", version: str = "0.1.0") -> Path:
    """A minimal pure-Python wheel whose module has `VALUE = "tiny-ok"`."""
    folder.mkdir(parents=True, exist_ok=True)
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": b'VALUE = "tiny-ok"\n',
        f"{dist_info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
        ),
        f"{dist_info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: dumont-tests\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
    }
    record = []
    for arcname, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{arcname},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for arcname, data in files.items():
            archive.writestr(arcname, data)
    return wheel


class WheelServer:
    """Serves one wheel over HTTP to Basic auth `user:password` only; counts who got it."""

    def __init__(self, wheel: Path, user: str, password: str) -> None:
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.wheel = wheel
        self.served = 0
        self.refused = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.headers.get("Authorization") != expected:
                    outer.refused += 1
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="wheels"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                outer.served += 1
                data = wheel.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# -- a tiny Hugging Face hub ----------------------------------------------------------------------


class FakeHub:
    """Just enough of the Hub's HTTP API for `snapshot_download` of one private repo.

    Serves `repo` at any revision (commit `sha`), answering 401 unless the request carries
    `Bearer <token>`; records the Authorization header of every request.
    """

    def __init__(self, repo: str, files: dict[str, bytes], token: str) -> None:
        self.repo = repo
        self.files = files
        self.token = token
        self.sha = hashlib.sha1(repo.encode()).hexdigest()
        self.requests: list[tuple[str, str, str | None]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                hub.answer(self, head=False)

            def do_HEAD(self) -> None:
                hub.answer(self, head=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, handler: BaseHTTPRequestHandler, head: bool) -> None:
        path = unquote(urlsplit(handler.path).path)
        auth = handler.headers.get("Authorization")
        self.requests.append((handler.command, path, auth))
        if auth != f"Bearer {self.token}":
            return self.send(handler, 401, b'{"error":"Invalid credentials"}', {}, head)
        json_type = {"Content-Type": "application/json"}
        if path.startswith(f"/api/models/{self.repo}/revision/"):
            body = {
                "id": self.repo,
                "sha": self.sha,
                "siblings": [{"rfilename": f} for f in self.files],
            }
            return self.send(handler, 200, json.dumps(body).encode(), json_type, head)
        if path.startswith(f"/api/models/{self.repo}/tree/"):
            tree = [
                {"type": "file", "path": f, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                for f, b in self.files.items()
            ]
            return self.send(handler, 200, json.dumps(tree).encode(), json_type, head)
        prefix = f"/{self.repo}/resolve/"
        if path.startswith(prefix):
            _revision, _, name = path[len(prefix) :].partition("/")
            if name in self.files:
                data = self.files[name]
                headers = {
                    "ETag": f'"{hashlib.sha1(data).hexdigest()}"',
                    "X-Repo-Commit": self.sha,
                    "Content-Type": "application/octet-stream",
                }
                return self.send(handler, 200, data, headers, head)
        return self.send(
            handler, 404, b'{"error":"not found"}', {"X-Error-Code": "EntryNotFound"}, head
        )

    @staticmethod
    def send(
        handler: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        headers: dict[str, str],
        head: bool,
    ) -> None:
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if not head:
            handler.wfile.write(body)


@contextlib.contextmanager
def private_server(data_dir: Path, env: dict[str, str]) -> Iterator[LocalServer]:
    server = LocalServer(data_dir, env=env).start()
    try:
        yield server
    finally:
        server.stop()
