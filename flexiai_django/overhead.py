"""What the gateway itself costs a request: ``X-FlexiAI-Overhead-Ms``.

The ASGI handler starts a :class:`Clock` when a request arrives; the provider adapters
mark the time they wait on a provider (:func:`upstream`); when the response's headers go
out, overhead = time since arrival − time waiting on providers. For a stream the headers
go out with the first piece of the answer, so its figure covers the time up to the first
byte. Concurrent attempts (hedging) count the time any of them was waiting, once.

A context variable carries the clock: tasks and ``sync_to_async`` threads started by the
request see the same one; code outside a request (a shell, a WSGI server) sees none and
:func:`upstream` does nothing there.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar

HEADER = "X-FlexiAI-Overhead-Ms"


class Clock:
    """Arrival time and the union of the intervals spent waiting on providers."""

    def __init__(self, now: Callable[[], float] = time.perf_counter) -> None:
        self.now = now
        self.started = now()
        self.waiting = 0.0
        self._open = 0
        self._since = 0.0

    def upstream_started(self) -> None:
        if self._open == 0:
            self._since = self.now()
        self._open += 1

    def upstream_done(self) -> None:
        self._open -= 1
        if self._open == 0:
            self.waiting += self.now() - self._since

    def overhead_ms(self) -> float:
        now = self.now()
        waiting = self.waiting + (now - self._since if self._open else 0.0)
        return max(0.0, (now - self.started - waiting) * 1000)


_current: ContextVar[Clock | None] = ContextVar("flexiai_overhead_clock", default=None)


def start() -> Clock:
    """A new clock for the request being handled in this context."""
    clock = Clock()
    _current.set(clock)
    return clock


def current() -> Clock | None:
    return _current.get()


@contextlib.contextmanager
def upstream() -> Iterator[None]:
    """Mark a wait on a provider (request sent → reply read)."""
    clock = _current.get()
    if clock is None:
        yield
        return
    clock.upstream_started()
    try:
        yield
    finally:
        clock.upstream_done()


class StreamWait:
    """A stream's wait on its provider: from the request until its first piece (or until
    it fails); what comes after is the client's time, not the gateway's."""

    def __init__(self) -> None:
        self.clock = _current.get()
        self.open = False

    def begin(self) -> None:
        if self.clock is not None and not self.open:
            self.clock.upstream_started()
            self.open = True

    def end(self) -> None:
        if self.clock is not None and self.open:
            self.clock.upstream_done()
            self.open = False
