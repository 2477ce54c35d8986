"""The capped job log (provider/joblog.py): compaction, logical offsets, bounded tails."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest

from dumont_plan.server.provider import joblog


def follow(path: Path, cap: int | None, offset: int, running: bool) -> tuple[bytes, int]:
    """Read from `offset` until nothing new; return the bytes read and the next offset."""
    got = b""
    while True:
        piece = joblog.read_from(path, offset, cap, running=running)
        if piece.next_offset == offset:
            return got, offset
        got += piece.text.encode()
        offset = piece.next_offset


@pytest.mark.parametrize("seed", range(40))
def test_a_follower_sees_the_head_and_every_kept_byte_once(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    cap = rng.choice([2048, 4096])
    path = tmp_path / "job.log"
    log = joblog.CappedLog(path, cap)
    stream = b""
    offset = 0
    seen = b""
    for _ in range(rng.randint(1, 40)):
        data = bytes(rng.choice(b"abc\n") for _ in range(rng.randint(0, 700)))
        log.write(data)
        stream += data
        got, offset = follow(path, cap, offset, running=True)
        seen += got
    log.close()
    got, offset = follow(path, cap, offset, running=False)
    seen += got
    assert offset == len(stream)  # offsets are positions in everything written
    kept = path.read_bytes()
    assert len(kept) <= cap
    if len(stream) <= cap:
        assert kept == stream == seen
    else:
        assert kept.startswith(stream[: joblog.head_bytes(cap)])
        assert kept.endswith(stream[-joblog.last_bytes(cap) :])
        assert b"bytes dropped here" in kept
        assert seen.endswith(stream[-joblog.last_bytes(cap) :])
        # Every kept byte was seen in order, none twice: what was seen is a subsequence.
        assert len(seen) <= len(stream) + len(joblog.marker(cap, 0)) * 40


def test_tail_counts_lines_like_splitlines_and_stops_at_its_bound() -> None:
    rng = random.Random(5)
    for _ in range(500):
        data = bytes(rng.choice(b"ab\n") for _ in range(rng.randint(0, 200)))
        lines = rng.randint(1, 8)
        expected = b"".join(data.splitlines(keepends=True)[-lines:])
        assert joblog.tail_bytes(io.BytesIO(data), len(data), lines) == expected
    huge = b"start\n" + b"x" * (3 * joblog.READ_MAX_BYTES)
    assert joblog.tail_bytes(io.BytesIO(huge), len(huge), 5) == b"x" * joblog.READ_MAX_BYTES


def test_a_character_cut_by_a_running_read_waits_for_its_end(tmp_path: Path) -> None:
    path = tmp_path / "job.log"
    path.write_bytes("é".encode()[:1])
    piece = joblog.read_from(path, 0, None, running=True)
    assert (piece.text, piece.next_offset) == ("", 0)
    with open(path, "ab") as handle:
        handle.write("é".encode()[1:] + b"\n")
    assert joblog.read_from(path, 0, None, running=True).text == "é\n"
