"""`diskuse`: a workspace's allocated size, symlinks not followed, sparse files not inflated."""

from __future__ import annotations

import os
from pathlib import Path

from dumont_plan.server.provider.diskuse import DiskWatch, used_bytes

MB = 1024 * 1024


def test_used_bytes_counts_nested_files_by_their_blocks(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "data").write_bytes(os.urandom(2 * MB))
    (tmp_path / "top").write_bytes(os.urandom(MB))

    used = used_bytes(tmp_path)

    assert 3 * MB <= used < 3 * MB + 256 * 1024


def test_used_bytes_follows_no_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "big").write_bytes(os.urandom(4 * MB))
    inside = tmp_path / "ws"
    inside.mkdir()
    (inside / "link").symlink_to(outside, target_is_directory=True)
    (inside / "file-link").symlink_to(outside / "big")

    assert used_bytes(inside) < MB


def test_a_sparse_file_counts_what_it_holds(tmp_path: Path) -> None:
    with (tmp_path / "sparse").open("wb") as handle:
        handle.truncate(1024 * MB)
        handle.write(b"x")

    assert used_bytes(tmp_path) < MB


def test_the_watch_reports_once_over_and_rechecks_at_most_every_interval(tmp_path: Path) -> None:
    watch = DiskWatch(tmp_path, limit=MB, gb_bytes=10**5, interval=60)
    assert watch.exceeded() is None
    (tmp_path / "f").write_bytes(os.urandom(2 * MB))
    assert watch.exceeded() is None  # not measured again within the interval
    message = watch.exceeded(force=True)

    assert message is not None and message == watch.error
    assert message.startswith("the workspace used 21 GB, more than disk_size 10.5 GB;"), message
    assert watch.exceeded() == message


def test_no_limit_never_measures(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(os.urandom(MB))
    assert DiskWatch(tmp_path, limit=0, gb_bytes=10**9).exceeded(force=True) is None
