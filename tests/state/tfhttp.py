"""A minimal stand-alone server of Terraform's HTTP backend protocol, as documented (not our
control plane), with HTTP basic auth: what a GitLab-style or home-made backend does.

- GET ADDRESS: 200 with the state, 404 when there is none;
- POST ADDRESS?ID=<lock id>: store the body; while locked, a write under another ID is 409;
- DELETE ADDRESS: forget the state;
- locking at LOCK_PATH with `lock_method` / `unlock_method` (LOCK/UNLOCK on the address, or
  GitLab's POST/DELETE on `ADDRESS/lock`): the body is the lock info; a lock already held
  answers 423 Locked with the holder's info; an unlock of another ID answers 409 Conflict with
  the holder's info; 200 OK for success;
- `GET /health` answers like a Dumont API without the `state.http-backend` capability;
- `fail_next` answers 503 to that many requests first (to see the client retry).
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class Backend:
    def __init__(self, user: str, password: str) -> None:
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.state: bytes | None = None
        self.lock: dict[str, Any] | None = None
        self.fail_next = 0
        self.requests: list[tuple[str, str]] = []
        self.mutex = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> Backend:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def answer(self, status: int, body: Any = None) -> None:
                data = (
                    b""
                    if body is None
                    else (body if isinstance(body, bytes) else json.dumps(body).encode())
                )
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def handle_any(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                data = self.body()
                with backend.mutex:
                    backend.requests.append((self.command, parts.path))
                    if backend.fail_next > 0:
                        backend.fail_next -= 1
                        self.answer(503, {"message": "try later"})
                        return
                    if parts.path == "/health":  # a Dumont-like API without remote state
                        self.answer(200, {"status": "healthy", "capabilities": []})
                        return
                    if self.headers.get("Authorization") != backend.auth:
                        self.answer(401, {"message": "401 Unauthorized"})
                        return
                    self.route(self.command, parts.path, query, data)

            def route(
                self, method: str, path: str, query: dict[str, list[str]], data: bytes
            ) -> None:
                is_lock = path.endswith("/lock")
                if (method, is_lock) in (("LOCK", False), ("POST", True)):
                    info = json.loads(data)
                    if backend.lock is not None:
                        self.answer(423, backend.lock)
                        return
                    backend.lock = info
                    self.answer(200)
                elif (method, is_lock) in (("UNLOCK", False), ("DELETE", True)):
                    info = json.loads(data) if data else {}
                    wanted = info.get("ID") or (query.get("ID") or [None])[0]
                    if backend.lock is not None and wanted != backend.lock["ID"]:
                        self.answer(409, backend.lock)
                        return
                    backend.lock = None
                    self.answer(200)
                elif method == "GET" and not is_lock:
                    if backend.state is None:
                        self.answer(404, {"message": "404 Not Found"})
                    else:
                        self.answer(200, backend.state)
                elif method == "POST" and not is_lock:
                    given = (query.get("ID") or [None])[0]
                    if backend.lock is not None and given != backend.lock["ID"]:
                        self.answer(409, backend.lock)
                        return
                    backend.state = data
                    self.answer(200)
                elif method == "DELETE" and not is_lock:
                    backend.state = None
                    self.answer(200)
                else:
                    self.answer(405, {"message": "405 Method Not Allowed"})

            do_GET = do_POST = do_DELETE = do_LOCK = do_UNLOCK = handle_any

        return Handler
