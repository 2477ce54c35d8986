"""Atomic file writes: a reader sees the old file or the new one, never a mix.

The one place of the package that writes a file through a temp file beside it (the CLI's
credentials, state and plans, the local control plane's records, secrets and sandbox files).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, text: str, *, mode: int | None = 0o600, durable: bool = True) -> None:
    """Write `text` to `path` through a temp file beside it (fsync, rename, fsync the folder).

    The file gets `mode` (0600 by default: credentials, state, plans); `mode=None` keeps the
    mode of the file being replaced. Newlines are written as they are in `text`. `durable=False`
    skips both fsyncs (files that a crash may lose, written often: the sandbox's job files).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode is None:
        mode = path.stat().st_mode & 0o7777
    tmp = _write_aside(path, text, mode, durable)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        _fsync_dir(path.parent)


def create_atomic(path: Path, text: str, *, mode: int = 0o600) -> bool:
    """Create `path` holding `text`, complete or not at all; False (and no change) if it exists.

    The file is written aside and hard-linked into place, so of two processes creating it at
    once exactly one wins and both then read the same content.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _write_aside(path, text, mode, durable=True)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    _fsync_dir(path.parent)
    return True


def _write_aside(path: Path, text: str, mode: int, durable: bool) -> str:
    """A temp file beside `path` holding `text` with `mode`; its name."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
