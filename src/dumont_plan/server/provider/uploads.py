"""Dataset uploads: a multipart body streamed to disk under a size cap, checked, then kept.

`MultipartSink` parses `multipart/form-data` as it arrives (no buffering of the body): the
`file` part is written in chunks to a temporary file in the user's dataset folder, hashed as it
goes; small fields (`format`) are kept in memory, capped. `store_upload` then checks every
record (`datasets.check_file`) and renames the file to its final name, or removes it: nothing
partial is left behind. Each user's folder `<data_dir>/datasets/<user id>/` is 0700 and every
file in it 0600; a dataset is addressed by its server path, which only its owner may use.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from dumont_plan.errors import DatasetError, FinetuneError
from dumont_plan.server.context import AppState
from dumont_plan.server.provider import datasets

FIELD_MAX_BYTES = 1024
HEADER_MAX_BYTES = 16 * 1024
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def user_dataset_dir(state: AppState, user_id: int) -> Path:
    root = state.settings.data_dir / "datasets"
    root.mkdir(mode=0o700, exist_ok=True)
    folder = root / str(user_id)
    folder.mkdir(mode=0o700, exist_ok=True)
    folder.chmod(0o700)
    return folder


def boundary_of(content_type: str) -> bytes:
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() != "multipart/form-data":
        raise FinetuneError(
            422, "send the dataset as multipart/form-data with the file in the field `file`"
        )
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary" and value.strip('"'):
            return value.strip('"').encode("latin-1")
    raise FinetuneError(422, "the multipart/form-data body has no boundary")


def _disposition(headers: bytes) -> tuple[str | None, str | None]:
    """(name, filename) of a part's Content-Disposition header."""
    for line in headers.decode("utf-8", "replace").split("\r\n"):
        key, _, value = line.partition(":")
        if key.strip().lower() != "content-disposition":
            continue
        found: dict[str, str] = {}
        for match in re.finditer(
            r';\s*([A-Za-z*]+)="((?:[^"\\]|\\.)*)"|;\s*([A-Za-z*]+)=([^;]*)', value
        ):
            name = (match.group(1) or match.group(3) or "").lower()
            found[name] = (match.group(2) if match.group(1) else match.group(4) or "").strip()
        return found.get("name"), found.get("filename")
    return None, None


@dataclass
class MultipartSink:
    """Feed it the body's chunks; the `file` part goes to `open_file()`, capped at `max_bytes`."""

    boundary: bytes
    directory: Path
    max_bytes: int
    fields: dict[str, str] = field(default_factory=dict)
    too_big: str | None = None  # the 413's message (default: the dataset's)
    filename: str | None = None
    temp_path: Path | None = None
    size: int = 0
    sha256: Any = field(default_factory=hashlib.sha256)
    _buffer: bytes = b""
    _state: str = "preamble"
    _part: str | None = None
    _handle: IO[bytes] | None = None
    _field: bytearray = field(default_factory=bytearray)

    @property
    def delimiter(self) -> bytes:
        return b"\r\n--" + self.boundary

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while self._step():
            pass

    def _step(self) -> bool:
        """Consume what the buffer allows; True if it should be called again."""
        if self._state == "preamble":
            start = (b"\r\n" + self._buffer).find(self.delimiter)
            if start < 0:
                self._buffer = self._buffer[-len(self.delimiter) :]
                return False
            self._buffer = self._buffer[start + 2 + len(self.boundary) :]
            self._state = "after-delimiter"
            return True
        if self._state == "after-delimiter":
            if len(self._buffer) < 2:
                return False
            if self._buffer.startswith(b"--"):
                self._state, self._buffer = "done", b""
                return False
            self._buffer = self._buffer[2:]  # CRLF
            self._state = "headers"
            return True
        if self._state == "headers":
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > HEADER_MAX_BYTES:
                    raise FinetuneError(422, "a multipart part's headers are too long")
                return False
            name, filename = _disposition(self._buffer[:end])
            self._buffer = self._buffer[end + 4 :]
            self._begin(name, filename)
            self._state = "body"
            return True
        if self._state == "body":
            end = self._buffer.find(self.delimiter)
            if end < 0:
                keep = len(self.delimiter) - 1
                if len(self._buffer) > keep:
                    self._data(self._buffer[:-keep])
                    self._buffer = self._buffer[-keep:]
                return False
            self._data(self._buffer[:end])
            self._buffer = self._buffer[end + len(self.delimiter) :]
            self._end()
            self._state = "after-delimiter"
            return True
        return False

    def _begin(self, name: str | None, filename: str | None) -> None:
        self._part = name
        self._field.clear()
        if name == "file" and filename is not None and self._handle is None:
            self.filename = filename
            self.temp_path = self.directory / f".upload-{uuid.uuid4().hex}.part"
            fd = os.open(self.temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            self._handle = os.fdopen(fd, "wb")
        elif name == "file":
            self._part = None  # a second file part is ignored

    def _data(self, data: bytes) -> None:
        if not data or self._part is None:
            return
        if self._part == "file" and self._handle is not None:
            self.size += len(data)
            if self.size > self.max_bytes:
                raise FinetuneError(
                    413,
                    self.too_big
                    or f"the dataset is larger than this server's limit of {self.max_bytes} bytes; "
                    "split it or ask the operator to raise DUMONT_SERVER_DATASET_MAX_BYTES",
                )
            self.sha256.update(data)
            self._handle.write(data)
        elif len(self._field) + len(data) <= FIELD_MAX_BYTES:
            self._field += data

    def _end(self) -> None:
        if self._part == "file" and self._handle is not None:
            self._handle.close()
        elif self._part:
            self.fields[self._part] = self._field.decode("utf-8", "replace")
        self._part = None

    def close(self) -> None:
        """Close the file part (after the body, or on a failure)."""
        if self._handle is not None and not self._handle.closed:
            self._handle.close()

    def discard(self) -> None:
        self.close()
        if self.temp_path is not None:
            self.temp_path.unlink(missing_ok=True)

    @property
    def complete(self) -> bool:
        return self._state == "done"


def safe_filename(filename: str) -> str:
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    return SAFE_NAME.sub("_", base)[-100:] or "dataset.jsonl"


def check_filename(filename: str | None) -> str:
    """The upload's file name; 400 as in the contract when missing or not .json/.jsonl."""
    if not filename:
        raise FinetuneError(400, "Filename is required")
    if not filename.endswith(datasets.SUFFIXES):
        raise FinetuneError(
            400, "Only JSON and JSONL files are supported (a file name ending in .json or .jsonl)"
        )
    return filename


def store_upload(state: AppState, user_id: int, sink: MultipartSink) -> dict[str, Any]:
    """Check the received file and keep it under its final name; remove it on any failure."""
    try:
        if not sink.complete or sink.temp_path is None:
            raise DatasetError(
                "the body has no complete `file` part; send the dataset as multipart/form-data "
                "in the field `file`",
                ("body", "file"),
            )
        filename = check_filename(sink.filename)
        declared = (sink.fields.get("format") or "").strip() or None
        if declared is not None and declared not in datasets.FORMATS:
            raise DatasetError(
                f"format {declared!r} is unknown; use one of {', '.join(datasets.FORMATS)} "
                "(or leave it out to detect it)",
                ("body", "format"),
            )
        suffix = ".jsonl" if filename.endswith(".jsonl") else ".json"
        try:
            checked = datasets.check_file(sink.temp_path, suffix, declared)
        except DatasetError as exc:
            raise DatasetError(
                f"{safe_filename(filename)} {exc.message}", ("body", "file", *exc.loc)
            ) from None
        stamp = time.strftime("%Y%m%d_%H%M%S", time.gmtime())
        final = sink.temp_path.with_name(
            f"{stamp}_{uuid.uuid4().hex[:6]}_{safe_filename(filename)}"
        )
        os.replace(sink.temp_path, final)
    except BaseException:
        sink.discard()
        raise
    digest = sink.sha256.hexdigest()
    try:
        state.store.execute(
            "INSERT INTO finetune_datasets (user_id, path, filename, format, records, size,"
            " sha256, created_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                user_id,
                str(final),
                filename,
                checked.format,
                checked.records,
                sink.size,
                digest,
                time.time(),
            ),
        )
    except BaseException:
        final.unlink(missing_ok=True)
        raise
    return {
        "success": True,
        "dataset_path": str(final),
        "records": checked.records,
        "format": checked.format,
        "sha256": digest,
        "size": sink.size,
        "filename": filename,
    }


def own_dataset(state: AppState, user_id: int, path: str) -> dict[str, Any] | None:
    """The caller's uploaded dataset at server path `path`, or None (also another user's)."""
    row = state.store.query_one(
        "SELECT * FROM finetune_datasets WHERE user_id = ? AND path = ?", (user_id, path)
    )
    if row is None or not Path(row["path"]).is_file():
        return None
    return dict(row)


def remove_user_leftovers(directory: Path) -> None:
    """Remove temporary files (over an hour old) of uploads that a crash of the control plane
    interrupted; called before each upload of the user."""
    for leftover in directory.glob(".upload-*.part"):
        with contextlib.suppress(OSError):
            if time.time() - leftover.stat().st_mtime > 3600:
                leftover.unlink()
