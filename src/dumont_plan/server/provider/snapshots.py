"""Workspace snapshots: a folder of a sandbox's workspace as one tar file, and back.

What a spot template keeps and what a spot deployment syncs to. The workspace belongs to a
workload (untrusted): archiving never follows a symbolic link (a link is stored as a link, a
linked folder is not entered) and skips what is neither a file, a folder nor a link (fifos,
sockets, devices); restoring uses tarfile's `data` filter, which refuses links that point
outside the destination, absolute paths and device files, and drops owners and the set-id
bits. A snapshot is written beside its final name and renamed, so a reader (a failover
restoring it) sees either the previous snapshot or the new one whole.
"""

from __future__ import annotations

import contextlib
import os
import tarfile
from pathlib import Path

from dumont_plan.server.provider.sandbox import map_workspace_path


def _keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    if info.isfile() or info.isdir() or info.issym():
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info
    return None


def _add_tree(archive: tarfile.TarFile, root: Path) -> None:
    """Every entry under `root` (not `root` itself), links as links, never entering one."""
    for folder, dirs, files in os.walk(root, followlinks=False):
        base = Path(folder)
        for name in sorted(dirs) + sorted(files):
            path = base / name
            arcname = path.relative_to(root).as_posix()
            archive.add(path, arcname=arcname, recursive=False, filter=_keep)


def take(workspace: Path, workspace_path: str, target: Path) -> int:
    """Archive the folder `workspace_path` of `workspace` (a missing folder: an empty
    snapshot) into `target`; return the snapshot's size in bytes.

    OSError when a file changed under it (the workload writes while it runs): the previous
    snapshot at `target` is then kept whole, and the caller tries again later."""
    target.parent.mkdir(parents=True, exist_ok=True)
    source = map_workspace_path(workspace, workspace_path)
    partial = target.with_name(target.name + ".partial")
    try:
        with tarfile.open(partial, "w") as archive:
            if source is not None and source.is_dir() and not source.is_symlink():
                _add_tree(archive, source)
    except (OSError, tarfile.TarError):
        remove(partial)
        raise
    partial.replace(target)
    return target.stat().st_size


def restore(snapshot: Path, workspace: Path, workspace_path: str) -> bool:
    """Unpack `snapshot` into the folder `workspace_path` of `workspace`; False when there
    is no snapshot, the folder is outside the workspace, or the archive cannot be read."""
    destination = map_workspace_path(workspace, workspace_path)
    if destination is None or not snapshot.is_file():
        return False
    try:
        destination.mkdir(parents=True, exist_ok=True)
        with tarfile.open(snapshot, "r") as archive:
            archive.extractall(destination, filter="data")
    except (OSError, tarfile.TarError):
        return False
    return True


def copy(source: Path, target: Path) -> None:
    """A snapshot's copy under another name (written aside, then renamed)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with open(source, "rb") as reader, open(partial, "wb") as writer:
        while chunk := reader.read(1 << 20):
            writer.write(chunk)
    partial.replace(target)


def remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
