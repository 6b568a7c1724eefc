"""Socket read timeouts that follow a stream's deadline, for the sync httpx client.

httpx takes one read timeout per request, and httpcore reads it once for the response
headers and once for the whole body: a fixed value cannot be both a short first-token
limit and a longer stall limit, and it does nothing against an upstream that trickles a
byte now and then. So each wait is bounded by the time left (:meth:`StreamClock.wait`):

* before the body, through a ``timeout`` extension whose values are computed when httpcore
  asks for them (pool, connect, write, then the headers' read);
* during the body, by bounding each read of the connection's ``network_stream`` (an
  httpcore extension) while the stream is being read, and only from the reading thread.

The reader also checks the deadline as each line arrives. A transport without a
``network_stream`` keeps the provider's timeout for body reads (a fixed shorter one would
cut healthy streams after their first token): there, only the arrival checks apply to the
body. Async streams bound each network read of the body with ``asyncio.timeout``
(:class:`BoundedByteStream`): per read, not per line, since one read often carries many
lines and a timer costs a few microseconds.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from .stream_clock import StreamClock


class DeadlineTimeouts(dict[str, float]):
    """httpcore's ``timeout`` extension, each value the time left when it is read."""

    def __init__(self, clock: StreamClock) -> None:
        super().__init__()
        self._clock = clock
        #: Set once the body's reads can't be bounded: they get the provider's timeout.
        self.unbounded = False

    def get(self, key: str, default: Any = None) -> float:
        if self.unbounded:
            return self._clock.unbounded_wait()
        return self._clock.wait(time.monotonic())


class Reader:
    """Which thread is reading the stream now: a sync generator may be resumed by another
    thread after each ``yield`` (a thread pool consuming it), so the reader claims it."""

    def __init__(self) -> None:
        self.thread: int | None = threading.get_ident()

    def claim(self) -> None:
        self.thread = threading.get_ident()


@contextmanager
def bounded_reads(response: httpx.Response, clock: StreamClock) -> Iterator[Reader]:
    """While inside, each read of ``response``'s connection by the stream's reader waits at
    most the clock's time left. The connection goes back to the pool only once the body is
    read, so the bound is removed before any other request can use it, and a request by
    another thread in that instant passes straight through."""
    reader = Reader()
    stream: Any = response.extensions.get("network_stream")
    read = getattr(stream, "read", None)
    if read is None or not hasattr(stream, "__dict__"):
        timeouts = response.request.extensions.get("timeout")
        if isinstance(timeouts, DeadlineTimeouts):
            timeouts.unbounded = True
        yield reader
        return

    def bounded(max_bytes: int, timeout: float | None = None) -> bytes:
        if threading.get_ident() == reader.thread:
            timeout = clock.wait(time.monotonic())
        return read(max_bytes, timeout)  # type: ignore[no-any-return]

    stream.read = bounded
    try:
        yield reader
    finally:
        reader.thread = None
        stream.__dict__.pop("read", None)


class BoundedByteStream(httpx.AsyncByteStream):
    """An async response body whose every read waits at most the clock's time left."""

    def __init__(self, inner: httpx.AsyncByteStream, clock: StreamClock) -> None:
        self._inner = inner
        self._clock = clock

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks = aiter(self._inner)
        while True:
            wait = self._clock.wait(time.monotonic())
            if self._clock.limited:
                async with asyncio.timeout(wait):
                    chunk = await anext(chunks, None)
            else:  # the read's own timeout (the provider's) comes first: no timer needed
                chunk = await anext(chunks, None)
            if chunk is None:
                return
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()
