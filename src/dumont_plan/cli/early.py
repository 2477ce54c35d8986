"""Early reads: the job list `dumont plan` will read, asked for while the CLI is still loading.

Before `dumont plan` sends its first request it spends ~200 ms of CPU importing typer,
pydantic, the spec models and the planner and loading the spec; at 1,000 applied jobs the job
list then takes ten pages, ~30 ms of the server's time and ~30 ms of httpx's. `main()` forks a
small reader process before it imports the CLI; the reader asks for those pages with the
standard library's HTTP client while the command loads, on another core, and leaves each
answer in a pipe:

    reads = start(argv)                          # cli/main.py, before the heavy imports
    ...
    client.transport.preloaded = reads.take      # cli/session.py, for the same URL

The transport then takes the body read early for a request instead of sending the same one
(same path, query and token), and sends everything else itself. So the server sees the
requests the plan makes anyway, never more (DESIGN §7 invariant 3): the reader asks only for
the job list's pages, each once, and the transport waits for a page the reader will send
rather than ask for it too. An answer that was not a 200 JSON one (a refused token, a 503)
is the transport's first answer to that request: its retries and error messages follow as
if it had sent it; a page asked for and not answered in time is the transport's timeout.
A reader that died before a page hands nothing over: the transport sends that request
itself. A plan whose reads were all answered this way never loads httpx.

Reads start only when what they need is known without asking anything: `plan` is the
command, the API URL is configured (`--api-url`, DUMONT_API_URL, the config file; not the
embedded server, which the command finds or starts), a token is set, no proxy variable is
set, and a spec file (the default names, or the `-f FILE`s) has a non-empty top-level `jobs:`.
`DUMONT_EARLY_READS=0` turns them off. Anything unexpected starts nothing: the command then
runs exactly as it would without them and reports its own errors.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from dumont_plan.config import load_token, resolve_endpoint

SWITCH = "DUMONT_EARLY_READS"  # "0": off
JOBS_PATH = "/api/v1/jobs/"
PAGE_SIZE = 100  # client/jobs.py PAGE_SIZE (a test keeps them equal)
HTTP_TIMEOUT = 60.0  # cli/session.py HTTP_TIMEOUT
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")  # client/base.py PROXY_VARS
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
NO_ANSWER = 0  # the status of a page the server did not answer within HTTP_TIMEOUT
PIPE_SIZE = 1 << 20  # Linux's default /proc/sys/fs/pipe-max-size
# A top-level `jobs:` holding something: a block with an indented line, or a non-empty flow
# mapping (`jobs: {}` and a block of comments read nothing: the plan may not list jobs).
_JOBS_SECTION = re.compile(
    rb"^jobs[ \t]*:[ \t]*(?:#[^\n]*)?\n(?:[ \t]*(?:#[^\n]*)?\n)*[ \t]+[^\s#]"
    rb"|^jobs[ \t]*:[ \t]*\{[ \t]*[^}\s]",
    re.MULTILINE,
)
_SPEC_NAMES = ("dumont.yaml", "dumont.yml", "dumontfile")  # loader/inputs.py DEFAULT_FILES

Key = tuple[str, str, tuple[tuple[str, str], ...]]


class Answer(NamedTuple):
    """An answer the reader read (client/base.py `Answer`): status, kept headers, body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def is_json_ok(self) -> bool:
        """A 200 with a JSON content type: decoded without loading httpx."""
        ctype = next((v for k, v in self.headers if k.lower() == "content-type"), "")
        return self.status == 200 and ctype.split(";")[0].strip() == "application/json"


def request_key(method: str, path: str, params: dict[str, Any] | None) -> Key:
    """What identifies a read: method, path and query (values as the URL carries them)."""
    query = tuple(sorted((str(k), str(v)) for k, v in (params or {}).items() if v is not None))
    return method.upper(), path, query


class EarlyReads:
    """The answers a forked reader process sends back, each handed out once."""

    def __init__(self, url: str, token: str, pid: int, pipe: BinaryIO, started: float) -> None:
        self.url = url
        self.token = token
        self.started = started  # epoch seconds: the pages are no older than this
        self._pid = pid
        self._pipe: BinaryIO | None = pipe
        self._lock = threading.Lock()
        self._got: dict[Key, Answer] = {}

    def take(self, path: str, params: dict[str, Any], token: str | None) -> Answer | None:
        """The answer read early for `GET path?params` (whatever its status), once; None when
        there is none (not a page, another token, or the reader stopped before it)."""
        key = request_key("GET", path, params)
        if token != self.token or not _is_page(key):
            return None
        with self._lock:
            while key not in self._got and self._pipe is not None:
                message = _read_message(self._pipe)
                if message is None:
                    self.close()
                    break
                self._got[message[0]] = message[1]
            return self._got.pop(key, None)

    def close(self) -> None:
        """Stop the reader (if it still runs) and reap it; what it did not send is sent by
        the transport."""
        pipe, self._pipe = self._pipe, None
        if pipe is None:
            return
        # The reader first: a thread blocked reading the pipe holds its lock, and gets its
        # end of file only once the reader is gone; closing the pipe before would wait on it.
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self._pid, 0)
        pipe.close()


def _is_page(key: Key) -> bool:
    method, path, query = key
    names = [name for name, _ in query]
    return method == "GET" and path == JOBS_PATH and names in (["limit"], ["limit", "offset"])


def _read_message(pipe: BinaryIO) -> tuple[Key, Answer] | None:
    head = pipe.read(8)
    if len(head) < 8:
        return None
    size = int.from_bytes(head, "big")
    data = pipe.read(size)
    if len(data) < size:
        return None
    meta_size = int.from_bytes(data[:4], "big")
    meta = json.loads(data[4 : 4 + meta_size])
    key: Key = ("GET", JOBS_PATH, tuple((str(k), str(v)) for k, v in meta["query"]))
    headers = [(str(name), str(value)) for name, value in meta["headers"]]
    return key, Answer(int(meta["status"]), headers, data[4 + meta_size :])


# The headers of an answer the transport reads (its type; a 429's or 503's wait).
_KEPT_HEADERS = ("content-type", "retry-after")


def _write_message(
    fd: int, params: dict[str, Any], status: int, headers: list[tuple[str, str]], body: bytes
) -> None:
    query = [list(pair) for pair in request_key("GET", JOBS_PATH, params)[2]]
    kept = [[name, value] for name, value in headers if name.lower() in _KEPT_HEADERS]
    meta = json.dumps({"query": query, "status": status, "headers": kept}).encode()
    data = len(meta).to_bytes(4, "big") + meta + body
    view = memoryview(len(data).to_bytes(8, "big") + data)
    while view:
        view = view[os.write(fd, view) :]


def _reader(url: str, token: str, fd: int) -> None:
    """The forked reader: the job list's pages, in order, each written to `fd` as it comes.

    It speaks HTTP with the standard library (one kept-alive connection): importing httpx
    would cost this process ~35 ms of CPU for ten GETs (the plan's own client, httpx, sends
    everything else, and anything this process did not answer)."""
    import http.client
    from urllib.parse import urlencode, urlsplit

    from dumont_plan import __version__

    parts = urlsplit(url)
    path = parts.path.rstrip("/") + JOBS_PATH
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(
            parts.netloc, timeout=HTTP_TIMEOUT, context=_tls_context()
        )
    else:
        connection = http.client.HTTPConnection(parts.netloc, timeout=HTTP_TIMEOUT)
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json",
        "User-Agent": f"dumont-plan/{__version__}",  # client/base.py USER_AGENT
    }

    def get(params: dict[str, Any]) -> tuple[int, bytes]:
        if connection.sock is None:
            connection.connect()  # failing here, nothing was asked: the transport asks
        try:
            connection.request("GET", f"{path}?{urlencode(params)}", headers=headers)
            response = connection.getresponse()
            body = response.read()
        except TimeoutError:  # asked, never answered: the transport says so, not asks again
            _write_message(fd, params, NO_ANSWER, [], b"")
            raise
        _write_message(fd, params, response.status, response.getheaders(), body)
        return response.status, body

    with contextlib.closing(connection):
        status, body = get({"limit": PAGE_SIZE})
        total = _more(body) if status == 200 else None
        for offset in range(PAGE_SIZE, total or 0, PAGE_SIZE):
            if get({"limit": PAGE_SIZE, "offset": offset})[0] != 200:
                break


def _die_with(parent: int) -> None:
    """Linux: the reader is killed when the command's process dies, however it dies (a
    SIGKILL runs no atexit); elsewhere it ends with its reads or their timeout."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C ends it with the command
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before that was in place
        os._exit(1)


def _tls_context() -> Any:
    """httpx's default verification: SSL_CERT_FILE, else SSL_CERT_DIR, else certifi's CAs."""
    import ssl

    if os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    if os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def _more(body: bytes) -> int | None:
    """The first page's `total` when the client will ask for the pages up to it: a full
    page (client/jobs.py `_pages` stops after a short one, whatever `total` says)."""
    try:
        page = json.loads(body)
    except ValueError:
        return None
    if not isinstance(page, dict):
        return None
    jobs, total = page.get("jobs"), page.get("total")
    if not isinstance(jobs, list) or len(jobs) < PAGE_SIZE:
        return None
    return total if isinstance(total, int) and not isinstance(total, bool) else None


def start(argv: Sequence[str], cwd: Path | None = None) -> EarlyReads | None:
    """Start the early reads of `dumont ARGV` when it is a `plan` that will read the job
    list from a configured API (see the module's docstring); None when nothing started."""
    try:
        wanted = _wanted(list(argv), cwd or Path.cwd())
    except Exception:  # anything odd: the command runs as before and says what is wrong
        return None
    if wanted is None or not hasattr(os, "fork"):
        return None
    url, token = wanted
    read_end, write_end = os.pipe()
    # The pages wait in the pipe until the plan asks (~53 KB per 100 jobs); the default 64 KB
    # would stop the reader after its first page. Linux lets a user grow a pipe to 1 MB.
    with contextlib.suppress(AttributeError, OSError):
        import fcntl

        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    started = time.time()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the reader: nothing of the parent's runs here (no atexit, no flush)
        code = 1
        try:
            os.close(read_end)
            _die_with(parent)
            _reader(url, token, write_end)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    reads = EarlyReads(url, token, pid, os.fdopen(read_end, "rb"), started)
    atexit.register(reads.close)
    return reads


def _wanted(argv: list[str], cwd: Path) -> tuple[str, str] | None:
    """(URL, token) when the early reads apply to this command line, else None."""
    api_url: str | None = None
    while argv and argv[0].startswith("--api-url"):
        option = argv.pop(0)
        if "=" in option:
            api_url = option.split("=", 1)[1]
        elif argv:
            api_url = argv.pop(0)
    if not argv or argv[0] != "plan" or {"--help", "-h"} & set(argv):
        return None
    if os.environ.get(SWITCH, "1") == "0":
        return None
    files = _files(argv[1:])
    if files is None:
        return None
    paths = [p if p.is_absolute() else cwd / p for p in files] or [
        next((cwd / n for n in _SPEC_NAMES if (cwd / n).is_file()), cwd / _SPEC_NAMES[0])
    ]
    if not any(p.is_file() and _JOBS_SECTION.search(p.read_bytes()) for p in paths):
        return None
    if any(os.environ.get(v) or os.environ.get(v.lower()) for v in PROXY_VARS):
        return None  # a proxy may carry the traffic: httpx's business
    endpoint = resolve_endpoint(api_url)
    if endpoint.url is None:
        return None  # the embedded server: finding or starting it is the command's business
    token = load_token(endpoint)
    return (endpoint.url, token) if token else None


def _files(args: list[str]) -> list[Path] | None:
    """The `-f/--file` paths of plan's arguments; None when one is a folder or unclear."""
    files: list[Path] = []
    it = iter(args)
    for arg in it:
        if arg in ("-f", "--file"):
            value = next(it, None)
            if value is None:
                return None
            files.append(Path(value))
        elif arg.startswith("--file="):
            files.append(Path(arg.split("=", 1)[1]))
        elif arg.startswith("-f") and len(arg) > 2:
            files.append(Path(arg[2:]))
    if any(p.is_dir() for p in files):
        return None
    return files
