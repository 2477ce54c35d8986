"""A hostile workspace cannot make a snapshot's restore (run by the control plane, as root)
write outside the workspace through links that `os.path.realpath` gives up on.

`take` stores each entry as it finds it (a link as a link) and then enters the folders it
listed, so a workload that swaps a name between a link and a folder while the walk runs
chooses which kind each member gets: the archive is the workload's. With folders of long
names and short links to them (`a -> dddd...`), a short member name expands past PATH_MAX;
`realpath` (not strict) then stops resolving and checks the rest by its letters, while the
kernel follows the links. tarfile's `data` filter relies on that `realpath` (before Python
3.11.13, CVE-2025-4517), so a link `escape` that really points above the workspace passes it
and `escape/newfile` is written outside."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from dumont_plan.server.provider import snapshots

STEPS = "abcdefghijklmnop"


def _add(
    archive: tarfile.TarFile, name: str, kind: bytes, link: str = "", data: bytes = b""
) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o755
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data) if data else None)


def hostile_snapshot(target: Path, restore_to: Path) -> None:
    max_path = os.pathconf(restore_to.parent, "PC_PATH_MAX")
    component = "d" * ((max_path - len(str(restore_to)) - 1) // (len(STEPS) + 1))
    with tarfile.open(target, "w") as archive:
        path = ""
        for step in STEPS:
            _add(archive, os.path.join(path, component), tarfile.DIRTYPE)
            _add(archive, os.path.join(path, step), tarfile.SYMTYPE, component)
            path = os.path.join(path, component)
        long_link = os.path.join(*STEPS, "l" * 254)
        _add(archive, long_link, tarfile.SYMTYPE, os.path.join(*[".."] * len(STEPS)))
        _add(archive, "escape", tarfile.SYMTYPE, os.path.join(long_link, ".."))
        _add(archive, "escape/newfile", tarfile.REGTYPE, data=b"written by the workload")


def test_restore_never_writes_outside_through_links_realpath_gives_up_on(
    tmp_path: Path,
) -> None:
    outer = tmp_path / "outer"
    restore_to = outer / "fresh"
    restore_to.mkdir(parents=True)
    snapshot = tmp_path / "s.tar"
    hostile_snapshot(snapshot, restore_to)
    snapshots.restore(snapshot, restore_to, "/workspace")
    assert not (outer / "newfile").exists(), "the restore wrote outside the workspace"


def test_restore_into_a_folder_the_workload_swapped_for_a_link_writes_nothing_outside(
    tmp_path: Path,
) -> None:
    """A spot deployment's folder (`workspace_path` /workspace/ckpt) restored while the new
    instance's processes run (a short boot, a big snapshot): the workload has made `ckpt` a
    link to `/` (to the host's root, for this root process). Every member must still land
    inside the workspace."""
    source = tmp_path / "source"
    (source / "ckpt").mkdir(parents=True)
    (source / "ckpt" / "w.bin").write_bytes(b"weights")
    snapshot = tmp_path / "s.tar"
    snapshots.take(source, "/workspace/ckpt", snapshot)
    outside = tmp_path / "host-root"
    outside.mkdir()
    workspace = tmp_path / "fresh" / "workspace"
    workspace.mkdir(parents=True)
    os.symlink(outside, workspace / "ckpt")
    snapshots.restore(snapshot, workspace, "/workspace/ckpt")
    assert not (outside / "w.bin").exists(), "the restore wrote through the workload's link"
