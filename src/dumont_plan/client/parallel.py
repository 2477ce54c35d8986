"""Reads side by side in daemon threads: the process never waits for one it no longer needs.

`concurrent.futures` joins its worker threads when the interpreter exits, so a read stuck on a
server that accepted the connection and never answered kept `dumont` alive after it had
reported an error (or after Ctrl-C) until the HTTP timeout. These reads change nothing on
the server, so abandoning them is safe; writes never go through here.

    pages = read_all(fetch_page, offsets, workers=4)   # results in order; the first error raised
    later = Background(read_lists)                      # started now ...
    lists = later.result()                              # ... its value or its exception
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Background(Generic[R]):
    """`fn()` running in a daemon thread from the moment this is made."""

    def __init__(self, fn: Callable[[], R], name: str = "dumont-read") -> None:
        self._done = threading.Event()
        self._value: R | None = None
        self._error: BaseException | None = None
        self._fn = fn
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def _run(self) -> None:
        try:
            self._value = self._fn()
        except BaseException as exc:  # handed to whoever asks for the result
            self._error = exc
        finally:
            self._done.set()

    def result(self) -> R:
        """The value `fn` returned (waits for it), or raises what it raised."""
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


def read_all(fn: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """`[fn(item) for item in items]`, up to `workers` at a time (daemon threads). After an
    error no new item starts; the first failed item's error (in `items` order) is raised."""
    if len(items) <= 1:
        return [fn(item) for item in items]
    lock = threading.Lock()
    todo = list(enumerate(items))
    todo.reverse()  # pop() takes the first item
    values: dict[int, R] = {}
    errors: dict[int, BaseException] = {}

    def work() -> None:
        while True:
            with lock:
                if not todo or errors:
                    return
                index, item = todo.pop()
            try:
                values[index] = fn(item)
            except BaseException as exc:  # raised below, in the caller's thread
                with lock:
                    errors[index] = exc

    for worker in [Background(work) for _ in range(min(workers, len(items)))]:
        worker.result()
    if errors:
        raise errors[min(errors)]
    return [values[i] for i in range(len(items))]
