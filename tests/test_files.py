"""files.py: the package's one atomic writer (replace) and its create-once variant."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dumont_plan.files import create_atomic, write_atomic


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("durable", [True, False])
def test_write_atomic_replaces_with_mode_0600_and_leaves_no_temp(
    tmp_path: Path, durable: bool
) -> None:
    path = tmp_path / "sub" / "f.json"
    write_atomic(path, "one\r\n", durable=durable)
    assert path.read_bytes() == b"one\r\n"
    assert mode_of(path) == 0o600
    write_atomic(path, "two", durable=durable)
    assert path.read_text() == "two"
    assert [p.name for p in path.parent.iterdir()] == ["f.json"]


def test_write_atomic_can_keep_the_mode_of_the_replaced_file(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text("a: 1\n")
    path.chmod(0o640)
    write_atomic(path, "a: 2\n", mode=None)
    assert (path.read_text(), mode_of(path)) == ("a: 2\n", 0o640)


def test_create_atomic_never_replaces(tmp_path: Path) -> None:
    path = tmp_path / "d" / "secret"
    assert create_atomic(path, "first") is True
    assert mode_of(path) == 0o600
    assert create_atomic(path, "second") is False
    assert path.read_text() == "first"
    assert [p.name for p in path.parent.iterdir()] == ["secret"]


def test_of_concurrent_creators_exactly_one_wins(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(lambda n: create_atomic(path, f"writer {n}"), range(16)))
    assert won.count(True) == 1
    assert path.read_text() == f"writer {won.index(True)}"
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]
