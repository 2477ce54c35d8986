"""Workspace snapshots (provider/snapshots.py): a round trip, and what a hostile workspace
cannot make the archiver (running as the control plane) read or the restore write."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from dumont_plan.server.provider import snapshots


def make_workspace(root: Path) -> Path:
    workspace = root / "workspace"
    (workspace / "ckpt" / "deep").mkdir(parents=True)
    (workspace / "ckpt" / "deep" / "w.bin").write_bytes(bytes(range(256)) * 4)
    (workspace / "notes.txt").write_text("epoch 3\n")
    os.symlink("notes.txt", workspace / "latest")  # a relative link inside: kept
    return workspace


def test_round_trip_keeps_files_folders_and_inner_links(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path)
    target = tmp_path / "snap" / "s.tar"
    size = snapshots.take(workspace, "/workspace", target)
    assert size == target.stat().st_size > 0
    fresh = tmp_path / "fresh"
    assert snapshots.restore(target, fresh, "/workspace")
    assert (fresh / "ckpt" / "deep" / "w.bin").read_bytes() == bytes(range(256)) * 4
    assert (fresh / "notes.txt").read_text() == "epoch 3\n"
    assert os.readlink(fresh / "latest") == "notes.txt"


def test_a_subfolder_only(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path)
    target = tmp_path / "s.tar"
    snapshots.take(workspace, "ckpt", target)
    with tarfile.open(target) as archive:
        assert sorted(archive.getnames()) == ["deep", "deep/w.bin"]
    fresh = tmp_path / "fresh"
    assert snapshots.restore(target, fresh, "/workspace/ckpt")
    assert (fresh / "ckpt" / "deep" / "w.bin").is_file()


def test_links_out_of_the_workspace_are_never_read_through(tmp_path: Path) -> None:
    secret_dir = tmp_path / "control-plane"
    secret_dir.mkdir()
    (secret_dir / "jwt-secret").write_text("TOP-SECRET-VALUE")
    workspace = make_workspace(tmp_path)
    os.symlink(secret_dir / "jwt-secret", workspace / "leak.txt")
    os.symlink(secret_dir, workspace / "leakdir")
    os.mkfifo(workspace / "pipe")
    target = tmp_path / "s.tar"
    snapshots.take(workspace, "/workspace", target)
    assert b"TOP-SECRET-VALUE" not in target.read_bytes()
    with tarfile.open(target) as archive:
        kinds = {m.name: m.type for m in archive.getmembers()}
    assert kinds["leak.txt"] == tarfile.SYMTYPE and kinds["leakdir"] == tarfile.SYMTYPE
    assert "pipe" not in kinds and "leakdir/jwt-secret" not in kinds
    # A folder asked for through a link out of the workspace (the link itself, or one on the
    # way to it): nothing of the outside.
    os.symlink(tmp_path, workspace / "up")
    for folder in ("/workspace/leakdir", "/workspace/up/control-plane"):
        snapshots.take(workspace, folder, target)
        assert b"TOP-SECRET-VALUE" not in target.read_bytes()
        with tarfile.open(target) as archive:
            assert archive.getnames() == []


def test_restore_leaves_out_what_points_outside_and_restores_the_rest(tmp_path: Path) -> None:
    archive_path = tmp_path / "hostile.tar"
    outside = tmp_path / "outside.txt"
    with tarfile.open(archive_path, "w") as archive:
        for name, target in [("up", "../outside.txt"), ("abs", str(outside))]:
            link = tarfile.TarInfo(name)
            link.type = tarfile.SYMTYPE
            link.linkname = target
            archive.addfile(link)
        escape = tarfile.TarInfo("../outside.txt")
        escape.size = 3
        archive.addfile(escape, io.BytesIO(b"bad"))
        good = tarfile.TarInfo("ok.txt")
        good.size = 2
        archive.addfile(good, io.BytesIO(b"ok"))
    fresh = tmp_path / "ws"
    assert snapshots.restore(archive_path, fresh, "/workspace")
    assert (fresh / "ok.txt").read_text() == "ok"
    assert not outside.exists()
    assert not (fresh / "up").is_symlink() and not (fresh / "abs").is_symlink()


def test_restore_without_a_snapshot_or_outside_the_workspace(tmp_path: Path) -> None:
    assert not snapshots.restore(tmp_path / "missing.tar", tmp_path / "ws", "/workspace")
    workspace = make_workspace(tmp_path)
    target = tmp_path / "s.tar"
    snapshots.take(workspace, "/workspace", target)
    assert not snapshots.restore(target, tmp_path / "ws", "/etc")


def test_fingerprint_changes_with_any_change_and_gives_the_newest_time(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path)
    first, newest = snapshots.fingerprint(workspace, "/workspace")
    assert snapshots.fingerprint(workspace, "/workspace") == (first, newest)
    notes = workspace / "notes.txt"
    assert newest >= notes.stat().st_mtime
    os.utime(notes, ns=(0, notes.stat().st_mtime_ns + 1_000_000))  # same size, new time
    assert snapshots.fingerprint(workspace, "/workspace")[0] != first
    second = snapshots.fingerprint(workspace, "/workspace")[0]
    (workspace / "ckpt" / "new").write_text("x")
    assert snapshots.fingerprint(workspace, "/workspace")[0] != second
    assert snapshots.fingerprint(workspace, "/workspace/ckpt")[0] != second
