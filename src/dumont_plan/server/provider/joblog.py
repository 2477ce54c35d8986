"""A job's log on disk: capped while it is written, read in bounded pieces.

The cap (`log_cap_bytes` of the job's spec, from `ServerSettings.log_cap_bytes`) keeps the head
and the last part. Once the file passes the cap it is rewritten (a new file renamed over the
old one, so a reader holding the old one reads a consistent whole) as:

    the first `head_bytes(cap)` bytes
    a marker line: `[dumont] log over its cap of C bytes: D bytes dropped here; ...`
    the last `last_bytes(cap)` bytes

Offsets in the API are *logical*: positions in everything the job ever wrote. The marker line
carries D (fixed width, rewritten at each compaction), so a byte after the marker that sits at
file position p has the logical offset p + D, before and after any later compaction: a
follower's offset stays valid. Reading never loads more than a bounded number of bytes.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

# The biggest answer of a tail or offset read (a line longer than this is cut to its end).
READ_MAX_BYTES = 1 << 20
CHUNK = 1 << 16
MARKER_FORMAT = (
    "\n[dumont] log over its cap of {cap} bytes: {dropped:020d} bytes dropped here;"
    " the head above and the last part below are kept\n"
)
MARKER_PATTERN = re.compile(
    rb"\n\[dumont\] log over its cap of (\d+) bytes: (\d{20}) bytes dropped"
)


def head_bytes(cap: int) -> int:
    return cap // 8


def last_bytes(cap: int) -> int:
    return cap // 4


def marker(cap: int, dropped: int) -> bytes:
    return MARKER_FORMAT.format(cap=cap, dropped=dropped).encode()


def dropped_bytes(handle: BinaryIO, cap: int | None) -> tuple[int, int]:
    """(file position where the kept last part starts, bytes dropped there); (0, 0) if none."""
    if not cap:
        return 0, 0
    head = head_bytes(cap)
    handle.seek(head)
    found = MARKER_PATTERN.match(handle.read(len(marker(cap, 0))))
    if found is None or int(found.group(1)) != cap:
        return 0, 0
    return head + len(marker(cap, 0)), int(found.group(2))


class CappedLog:
    """Appends bytes to a log file, compacting it when it passes `cap` (None: no cap)."""

    def __init__(self, path: Path, cap: int | None) -> None:
        self.path = path
        self.cap = cap if cap and cap > 0 else None
        self.handle = open(path, "ab", buffering=0)  # noqa: SIM115 - closed in close()
        self.size = os.fstat(self.handle.fileno()).st_size

    def write(self, data: bytes) -> None:
        self.handle.write(data)
        self.size += len(data)
        if self.cap is not None and self.size > self.cap:
            self.compact(self.cap)

    def compact(self, cap: int) -> None:
        """Rewrite the file as head + marker + last part (then append to the new file)."""
        head, keep = head_bytes(cap), last_bytes(cap)
        with open(self.path, "rb") as old:
            start, dropped = dropped_bytes(old, cap)
            size = os.fstat(old.fileno()).st_size
            logical_end = size + dropped if start else size
            mark = marker(cap, logical_end - head - len(marker(cap, 0)) - keep)
            temporary = self.path.with_name(self.path.name + ".compacting")
            with open(temporary, "wb") as new:
                old.seek(0)
                new.write(old.read(head))
                new.write(mark)
                old.seek(size - keep)
                while chunk := old.read(CHUNK):
                    new.write(chunk)
            os.chmod(temporary, 0o600)
            os.replace(temporary, self.path)
        self.handle.close()
        self.handle = open(self.path, "ab", buffering=0)  # noqa: SIM115 - closed in close()
        self.size = os.fstat(self.handle.fileno()).st_size

    def close(self) -> None:
        self.handle.close()


@dataclass(frozen=True)
class LogPiece:
    """Some text of a log and the logical offsets around it."""

    text: str
    next_offset: int  # where the next read continues
    size: int  # the log's logical size when it was read


def _decode(data: bytes, hold_partial: bool) -> tuple[str, int]:
    """The text of `data` and how many bytes it used: an incomplete UTF-8 character at the end
    is held back (for the next read) when `hold_partial`."""
    used = len(data)
    if hold_partial:
        for back in range(1, min(4, len(data)) + 1):
            byte = data[-back]
            if byte & 0xC0 != 0x80:  # the lead byte of the last character
                need = 2 if byte >= 0xC0 else 1
                need = 3 if byte >= 0xE0 else need
                need = 4 if byte >= 0xF0 else need
                if need > back:
                    used -= back
                break
    return data[:used].decode("utf-8", errors="replace"), used


def read_from(path: Path, offset: int, cap: int | None, *, running: bool) -> LogPiece:
    """At most READ_MAX_BYTES of the log from logical `offset` (bytes dropped by the cap are
    skipped: the marker says so)."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError:
        return LogPiece("", offset, 0)
    with handle:
        start, dropped = dropped_bytes(handle, cap)
        size = os.fstat(handle.fileno()).st_size
        logical_size = size + dropped if start else size
        position = offset
        if start and offset >= start:
            position = max(start, offset - dropped)
        if position >= size:
            return LogPiece("", max(offset, logical_size), logical_size)
        handle.seek(position)
        data = handle.read(READ_MAX_BYTES)
    text, used = _decode(data, hold_partial=running or len(data) == READ_MAX_BYTES)
    end = position + used
    next_offset = end + dropped if start and end > start else end
    if next_offset < offset:  # the read started inside the dropped part
        next_offset = offset
    return LogPiece(text, next_offset, logical_size)


def read_tail(path: Path, lines: int, cap: int | None) -> LogPiece:
    """The last `lines` lines, at most READ_MAX_BYTES (the end of a longer line)."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError:
        return LogPiece("", 0, 0)
    with handle:
        start, dropped = dropped_bytes(handle, cap)
        size = os.fstat(handle.fileno()).st_size
        logical_size = size + dropped if start else size
        data = tail_bytes(handle, size, lines)
    return LogPiece(data.decode("utf-8", errors="replace"), logical_size, logical_size)


def tail_bytes(handle: BinaryIO, size: int, lines: int) -> bytes:
    """The last `lines` lines of the first `size` bytes: read backwards chunk by chunk, each
    byte looked at once, never more than READ_MAX_BYTES (O(tail), whatever the line lengths).

    A final newline ends the last line; a last line without one is a line too.
    """
    chunks: list[bytes] = []
    position = size
    needed = lines  # newlines still to pass, from the end
    first = True
    while position > 0 and size - position < READ_MAX_BYTES and needed > 0:
        step = min(CHUNK, position, READ_MAX_BYTES - (size - position))
        position -= step
        handle.seek(position)
        chunk = handle.read(step)
        cut = len(chunk) - 1 if first and chunk.endswith(b"\n") else len(chunk)
        first = False
        while needed > 0:
            cut = chunk.rfind(b"\n", 0, cut)
            if cut < 0:
                break
            needed -= 1
        chunks.append(chunk[cut + 1 :] if needed == 0 else chunk)
    return b"".join(reversed(chunks))


@dataclass
class WholeLog:
    """The whole log file (bounded by its cap), to stream as JSON text piece by piece: a big
    log is never loaded (nor encoded) at once."""

    handle: BinaryIO | None
    length: int  # bytes of the file to send (its size when opened)
    size: int  # the log's logical size

    def json_text(self) -> Iterator[bytes]:
        """The log as the inside of a JSON string (UTF-8 decoded, bad bytes replaced)."""
        if self.handle is None:
            return
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        remaining = self.length
        try:
            while remaining > 0:
                chunk = self.handle.read(min(CHUNK * 4, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                yield json.dumps(decoder.decode(chunk))[1:-1].encode()
            yield json.dumps(decoder.decode(b"", final=True))[1:-1].encode()
        finally:
            self.handle.close()


def open_all(path: Path, cap: int | None) -> WholeLog:
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by WholeLog.json_text
    except OSError:
        return WholeLog(None, 0, 0)
    _, dropped = dropped_bytes(handle, cap)
    handle.seek(0)
    length = os.fstat(handle.fileno()).st_size
    return WholeLog(handle, length, length + dropped)


def read_job_log(
    directory: Path, tail: int | None, offset: int | None, *, running: bool, name: str = "job.log"
) -> LogPiece | WholeLog:
    """A job's log (`name` in its directory: `job.log`, or a rank's, `provider.ranks`; capped
    as its `spec.json` says): from logical byte `offset` (a bounded piece), its last `tail`
    lines, or all of it (to stream)."""
    cap: object = None
    with contextlib.suppress(OSError, ValueError, AttributeError):
        cap = json.loads((directory / "spec.json").read_text(encoding="utf-8")).get("log_cap_bytes")
    capped = cap if isinstance(cap, int) and cap > 0 else None
    path = directory / name
    if offset is not None:
        return read_from(path, offset, capped, running=running)
    if tail is not None:
        return read_tail(path, tail, capped)
    return open_all(path, capped)


MASK = b"***"


class LogWriter:
    """Appends output to the job log as it arrives, whole lines at a time, secrets masked;
    past `cap` bytes the log keeps its head and its last part (`CappedLog`)."""

    def __init__(self, path: Path, secrets: list[str], cap: int | None = None) -> None:
        self.path = path
        self.secrets = sorted({s.encode() for s in secrets if len(s) >= 3}, key=len, reverse=True)
        self.keep = max((len(s) for s in self.secrets), default=1) - 1
        self.pending = b""
        self.handle = CappedLog(path, cap)

    def mask(self, data: bytes) -> bytes:
        for secret in self.secrets:
            data = data.replace(secret, MASK)
        return data

    def feed(self, data: bytes) -> None:
        self.pending += data
        cut = self.pending.rfind(b"\n") + 1
        if cut == 0 and len(self.pending) > 65536:
            cut = len(self.pending) - self.keep
        if cut > 0:
            chunk, self.pending = self.pending[:cut], self.pending[cut:]
            self.handle.write(self.mask(chunk))

    def flush(self) -> None:
        if self.pending:
            self.handle.write(self.mask(self.pending))
            self.pending = b""

    def note(self, message: str) -> None:
        self.flush()
        self.handle.write(self.mask(f"[dumont] {message}\n".encode()))

    def close(self) -> None:
        self.flush()
        self.handle.close()
