"""Small wording helpers shared by the CLI and the libraries (standard library only)."""

from __future__ import annotations


def plural(count: int, word: str, many: str | None = None) -> str:
    """`1 offer`, `2 offers` (`many` for irregular words: `plural(2, "batch", "batches")`)."""
    return f"{count} {word if count == 1 else (many or word + 's')}"
