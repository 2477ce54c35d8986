"""A private git repository over (dumb) HTTP with Basic auth, for credential tests.

`PrivateGitServer(repo_dir, user, token)` serves a bare copy of `repo_dir` at
`{url}/repo.git`, answering 401 (with a Basic challenge) unless the request carries
`user:token`. While it answers an authorised request it looks at every process's command line
for the token (`token_in_argv`): git's argv is visible to any local user in `ps`.
"""

from __future__ import annotations

import base64
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


def argv_holding(text: str) -> list[str]:
    """Command lines of live processes that contain `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(cmdline)
    return found


class PrivateGitServer:
    def __init__(self, repo_dir: Path, bare_dir: Path, user: str, token: str) -> None:
        subprocess.run(
            ["git", "clone", "-q", "--bare", str(repo_dir), str(bare_dir)],
            check=True,
            capture_output=True,
        )
        subprocess.run(["git", "update-server-info"], cwd=bare_dir, check=True)
        self.root = bare_dir
        self.expected = "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()
        self.token = token
        self.authorised = 0
        self.token_in_argv: list[str] = []
        git = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                git.answer(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, credentials: str = "") -> str:
        return f"http://{credentials}{self.host}/repo.git"

    def __enter__(self) -> PrivateGitServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        if handler.headers.get("Authorization") != self.expected:
            handler.send_response(401)
            handler.send_header("WWW-Authenticate", 'Basic realm="private"')
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        self.authorised += 1
        self.token_in_argv += argv_holding(self.token)
        path = urlsplit(handler.path).path.removeprefix("/repo.git/")
        target = (self.root / path).resolve()
        if not target.is_file() or not target.is_relative_to(self.root.resolve()):
            handler.send_response(404)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        data = target.read_bytes()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
