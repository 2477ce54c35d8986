"""Workspace snapshots: a folder of a sandbox's workspace as one tar file, and back.

What a spot template keeps and what a spot deployment syncs to. The workspace belongs to a
workload (untrusted): archiving never follows a symbolic link (a link is stored as a link, a
linked folder is not entered) and skips what is neither a file, a folder nor a link (fifos,
sockets, devices); the walk starts at the workspace itself, holds each folder open and never
descends into a link (also one on the way to the folder asked for, or swapped in meanwhile),
and a file is read through a descriptor opened without following links. Restoring uses
tarfile's `data` filter, which leaves out links that point outside the destination, absolute
paths and device files, and drops owners and the set-id bits; each member's path and link
target are checked again, resolved strictly, against the workspace (the filter's own check
can be fooled by links that expand past PATH_MAX, and contains a member in the destination
folder, which a running workload may swap for a link). A snapshot is written beside its
final name and renamed, so a reader (a failover restoring it) sees either the previous
snapshot or the new one whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

from dumont_plan.server.provider.sandbox import map_workspace_path


def _info(name: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = int(st.st_mtime)
    return info


def _add_entry(archive: tarfile.TarFile, dirfd: int, name: str, arcname: str) -> None:
    """One entry of a folder opened as `dirfd`: a folder, a link (as a link) or a regular file
    read through a descriptor opened without following a link and checked after opening (a
    workload swapping a file for a link meanwhile gets the link refused, not its target read
    by this root process); anything else is left out."""
    st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    info = _info(arcname, st)
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        archive.addfile(info)
    elif stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(name, dir_fd=dirfd)
        archive.addfile(info)
    elif stat.S_ISREG(st.st_mode):
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dirfd)
        with os.fdopen(fd, "rb") as handle:
            opened = os.fstat(handle.fileno())
            if not stat.S_ISREG(opened.st_mode):
                return
            info = _info(arcname, opened)
            info.size = opened.st_size
            archive.addfile(info, handle)


def _walk(workspace: Path, folder: tuple[str, ...]) -> Iterator[tuple[int, str, str]]:
    """(folder descriptor, name, name in the archive) of every entry under `workspace/folder`
    (not the folder itself).

    `os.fwalk` from the workspace holds each folder open and does not descend into a link,
    even one swapped in while it walks; on the way down to `folder` only its path is
    followed."""
    depth = len(folder)
    for path, dirs, files, dirfd in os.fwalk(workspace, follow_symlinks=False):
        parts = Path(path).relative_to(workspace).parts
        if len(parts) < depth:
            dirs[:] = [d for d in dirs if parts == folder[: len(parts)] and d == folder[len(parts)]]
            continue
        base = Path(*parts[depth:])
        for name in sorted(dirs) + sorted(files):
            yield dirfd, name, (base / name).as_posix()


def _folder(workspace: Path, workspace_path: str) -> tuple[str, ...] | None:
    source = map_workspace_path(workspace, workspace_path)
    if source is None or not workspace.is_dir() or workspace.is_symlink():
        return None
    return source.relative_to(workspace).parts


def fingerprint(workspace: Path, workspace_path: str) -> tuple[str, float]:
    """A digest of the names, kinds, sizes and modification times of what `take` would
    archive (equal digests: nothing to archive again), and the newest modification time: a
    file changed again within the clock's granularity keeps its time, so a digest is only
    to be trusted once its newest time is some way in the past (as git does)."""
    digest = hashlib.sha256()
    newest = 0.0
    folder = _folder(workspace, workspace_path)
    for dirfd, name, arcname in _walk(workspace, folder) if folder is not None else ():
        st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        digest.update(f"{arcname}\0{st.st_mode}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        newest = max(newest, st.st_mtime, st.st_ctime)
    return digest.hexdigest(), newest


def take(workspace: Path, workspace_path: str, target: Path) -> int:
    """Archive the folder `workspace_path` of `workspace` (a missing folder: an empty
    snapshot) into `target`; return the snapshot's size in bytes.

    OSError when a file changed under it (the workload writes while it runs): the previous
    snapshot at `target` is then kept whole, and the caller tries again later."""
    target.parent.mkdir(parents=True, exist_ok=True)
    folder = _folder(workspace, workspace_path)
    partial = target.with_name(target.name + ".partial")
    try:
        with tarfile.open(partial, "w") as archive:
            for dirfd, name, arcname in _walk(workspace, folder) if folder is not None else ():
                _add_entry(archive, dirfd, name, arcname)
    except (OSError, tarfile.TarError):
        remove(partial)
        raise
    partial.replace(target)
    return target.stat().st_size


def _resolves_inside(path: str, destination: str) -> bool:
    """`path` resolved strictly stays in `destination`: its longest existing part through
    `realpath(strict=True)` (which fails instead of giving up on a link it cannot expand, as
    the non-strict one does past PATH_MAX), the missing rest taken by its letters (no `..`)."""
    rest: list[str] = []
    head = path
    while True:
        try:
            os.lstat(head)
            break
        except FileNotFoundError:
            head, tail = os.path.split(head)
            rest.insert(0, tail)
        except OSError:
            return False
    if ".." in rest:
        return False
    try:
        resolved = os.path.join(os.path.realpath(head, strict=True), *rest)
    except OSError:
        return False
    return os.path.commonpath([resolved, destination]) == destination


def _data_only(member: tarfile.TarInfo, destination: str, inside: str) -> tarfile.TarInfo | None:
    """tarfile's `data` filter, a refused member left out (the rest is still restored).

    Its checks use the non-strict `realpath`, which stops expanding links once a path grows
    past PATH_MAX (CVE-2025-4517, fixed in Python 3.11.13), and contain a member in the
    destination, a folder the workload may have swapped for a link: the member's path and a
    link's target are checked again, resolved strictly, against the workspace (`inside`)."""
    try:
        kept = tarfile.data_filter(member, destination)
    except tarfile.FilterError:
        return None
    paths = [os.path.join(destination, member.name)]
    if member.issym():
        paths.append(os.path.join(destination, os.path.dirname(member.name), member.linkname))
    elif member.islnk():
        paths.append(os.path.join(destination, member.linkname))
    return kept if all(_resolves_inside(path, inside) for path in paths) else None


def restore(snapshot: Path, workspace: Path, workspace_path: str) -> bool:
    """Unpack `snapshot` into the folder `workspace_path` of `workspace`; False when there
    is no snapshot, the folder is outside the workspace, or the archive cannot be read."""
    destination = map_workspace_path(workspace, workspace_path)
    if destination is None or not snapshot.is_file():
        return False
    try:
        workspace.mkdir(parents=True, exist_ok=True)
        inside = os.path.realpath(workspace, strict=True)
        if not _resolves_inside(str(destination), inside):
            return False
        destination.mkdir(parents=True, exist_ok=True)
        with tarfile.open(snapshot, "r") as archive:
            archive.extractall(
                destination,
                filter=lambda member, dest: _data_only(member, dest, inside),
            )
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
