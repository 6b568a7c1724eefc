"""When a stream must next be heard from: its first-token limit, then its stall limit. Pure.

A provider that accepts a streamed request and then says nothing holds the caller until
its (long) overall ``timeout``; one that stops half-way holds it as long. Two shorter
limits cut such streams so the chain can fail over or continue elsewhere:

* **first token**: until the first *substantive* delta (text, a tool-call piece or a
  refusal, :attr:`StreamDelta.substantive`), the stream must produce it within
  ``first_token`` seconds of the request's start. Role headers, usage, keep-alive
  comments and pings do not count: they prove the connection, not the answer.
* **stall**: after the first token, each wait for the next delta may last at most
  ``stall`` seconds. The wait starts when the reader asks for more, not when the last
  delta arrived: time the caller spends with a delta is not the upstream's silence.

Either limit may be ``None`` (off); the provider's per-read ``timeout`` always applies.
Time is passed in (``now``), so the rules are tested with a fake clock; the adapter
machinery (:mod:`flexiai_django.providers.base`) turns them into socket read timeouts
(sync) or ``asyncio.timeout`` (async) and checks them as each line arrives, which also
catches an upstream that trickles keep-alive bytes but no answer.
"""

from __future__ import annotations

from flexiai_django.chat_types import StreamDelta
from flexiai_django.errors import FirstTokenTimeout, StreamStalled, UpstreamTimeout

#: The shortest wait handed out: a socket timeout of 0 would mean "non-blocking", whose
#: empty read is an error rather than a timeout.
MIN_WAIT = 0.001


class StreamClock:
    """One stream's current deadline. Not thread-safe: one stream, one reader."""

    def __init__(self, *, timeout: float, first_token: float | None, stall: float | None,
                 now: float) -> None:
        self.timeout = timeout
        self.first_token = first_token
        self.stall = stall
        self.started = now
        #: Whether the first substantive delta has arrived.
        self.answering = False
        self.deadline: float | None = now + first_token if first_token is not None else None
        #: Whether the last wait handed out was shortened by a limit (so a timeout then
        #: is that limit's, not the provider's own ``timeout``).
        self.limited = False

    def wait(self, now: float) -> float:
        """Seconds the next wait may last: the provider's timeout or less."""
        if self.deadline is None:
            self.limited = False
            return self.timeout
        left = max(MIN_WAIT, self.deadline - now)
        self.limited = left < self.timeout
        return min(left, self.timeout)

    def unbounded_wait(self) -> float:
        """The provider's timeout, for a wait the limits cannot bound (see ``deadline_io``)."""
        self.limited = False
        return self.timeout

    def expired(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline

    def heard(self, delta: StreamDelta) -> None:
        """A delta reached the reader; the first substantive one ends the first-token wait."""
        if delta.substantive:
            self.answering = True

    def resumed(self, now: float) -> None:
        """The reader asks for more: after the first token, the stall limit runs from now."""
        if self.answering:
            self.deadline = now + self.stall if self.stall is not None else None

    def done(self) -> None:
        """The end marker came: draining what follows is bound by ``timeout`` only."""
        self.deadline = None

    def error(self, provider: str) -> UpstreamTimeout:
        """The error for a stream cut by its current limit."""
        if self.answering:
            return StreamStalled(f"stream silent for over {self.stall:g}s", provider=provider)
        return FirstTokenTimeout(f"no first token within {self.first_token:g}s",
                                 provider=provider)
