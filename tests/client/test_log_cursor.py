"""LogCursor against fakes: a server with byte offsets (the local control plane) and one
without (the real platform), each line once, the unended last line at the end."""

from __future__ import annotations

from typing import Any, cast

from dumont_plan.client.jobs import JobsAPI, LogCursor


class WholeLogServer:
    """Answers like the real platform: the whole log (or its last lines), no `next_offset`."""

    def __init__(self) -> None:
        self.text = ""
        self.calls: list[dict[str, Any]] = []

    def logs(self, job_id: str, tail: int | None = None, offset: int | None = None) -> Any:
        self.calls.append({"tail": tail, "offset": offset})
        lines = self.text.splitlines(keepends=True)
        text = "".join(lines[-tail:]) if tail else self.text
        return {"job_id": job_id, "logs": text}


class OffsetServer(WholeLogServer):
    """Answers like the local control plane: `?offset=B` gives the bytes after B (in pieces
    of at most `piece` bytes), with `next_offset` and `size`."""

    def __init__(self, piece: int = 1 << 20) -> None:
        super().__init__()
        self.piece = piece

    def logs(self, job_id: str, tail: int | None = None, offset: int | None = None) -> Any:
        self.calls.append({"tail": tail, "offset": offset})
        data = self.text.encode()
        if offset is not None:
            chunk = data[offset : offset + self.piece]
            return {"logs": chunk.decode(), "next_offset": offset + len(chunk), "size": len(data)}
        lines = self.text.splitlines(keepends=True)
        text = "".join(lines[-tail:]) if tail else self.text
        return {"logs": text, "next_offset": len(data), "size": len(data)}


def cursor(server: WholeLogServer) -> LogCursor:
    return LogCursor(cast(JobsAPI, server), "job_1")


def test_without_offsets_the_whole_log_is_read_each_time() -> None:
    server = WholeLogServer()
    server.text = "a\nb\nc\npart"
    follow = cursor(server)
    assert follow.start(tail=2) == ["b", "c"]
    server.text += "ial\nd\n"
    assert follow.read() == ["partial", "d"]
    assert follow.read(final=True) == []
    assert all(call["offset"] is None for call in server.calls[1:])


def test_with_offsets_only_new_bytes_are_asked_for() -> None:
    server = OffsetServer(piece=4)
    server.text = "é1\nline two\npart"
    follow = cursor(server)
    assert follow.start() == ["é1", "line two"]
    asked = len(server.calls)
    server.text += "ial\nlast"
    assert follow.read() == ["partial"]
    assert follow.read(final=True) == ["last"]
    assert follow.read(final=True) == []
    later = server.calls[asked:]
    assert all(call["offset"] is not None and call["offset"] >= 17 for call in later)


def test_with_offsets_a_tail_start_follows_from_the_end() -> None:
    server = OffsetServer()
    server.text = "1\n2\n3\n"
    follow = cursor(server)
    assert follow.start(tail=1) == ["3"]
    server.text += "4\n"
    assert follow.read() == ["4"]
    assert server.calls[-1]["offset"] == len("1\n2\n3\n")
