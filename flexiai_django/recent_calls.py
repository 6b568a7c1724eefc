"""Each worker's recent latency and success rate per provider, for the status page.

Kept in memory per process (no I/O on the request path) and published by the broadcast
listener every ``STATS_PUBLISH_SECONDS``; the page adds up the latest summary of every
worker. A window keeps at most :data:`MAX_SAMPLES` attempts per provider, so under
heavy traffic it covers less than ``STATS_WINDOW_SECONDS``.

It also keeps each provider's last :data:`FIRST_TOKEN_SAMPLES` times to first token, apart
for streams (the first chunk) and plain calls (the whole answer): hedged requests wait
for a provider's recent p95 of them before starting a second call, and the broadcast
listener shares those of the window with the capacity planner
(:mod:`flexiai_django.first_tokens`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TypedDict

from flexiai_django.process_local import PerProcess

MAX_SAMPLES = 1000
#: Times to first token kept per provider and mode (streamed or not), newest last.
FIRST_TOKEN_SAMPLES = 200


class Summary(TypedDict):
    count: int
    ok: int
    latency_ms_sum: float
    latency_ms_max: float


class Stats:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._samples: dict[str, deque[tuple[float, bool, float]]] = {}
        self._first_token: dict[tuple[str, bool], deque[tuple[float, float]]] = {}
        self._noted: dict[tuple[str, bool], int] = {}
        self.recorded = 0
        #: Bumped by :meth:`clear`: figures derived from an older epoch's times are stale.
        self.epoch = 0

    def record(self, provider: str, ok: bool, latency_ms: float) -> None:
        samples = self._samples.get(provider)
        if samples is None:
            samples = self._samples.setdefault(provider, deque(maxlen=MAX_SAMPLES))
        samples.append((self._clock(), ok, latency_ms))
        self.recorded += 1

    def first_token(self, provider: str, seconds: float, *, streamed: bool) -> None:
        """Note how long ``provider`` took to its first token (a stream's first chunk, a
        plain call's whole answer)."""
        key = (provider, streamed)
        times = self._first_token.get(key)
        if times is None:
            times = self._first_token.setdefault(key, deque(maxlen=FIRST_TOKEN_SAMPLES))
        times.append((self._clock(), seconds))
        self._noted[key] = self._noted.get(key, 0) + 1

    def first_tokens_noted(self, provider: str, *, streamed: bool) -> tuple[int, int]:
        """``(epoch, count)`` of the times noted for ``provider``: lets a caller keep a
        figure derived from them until enough new ones came in."""
        return self.epoch, self._noted.get((provider, streamed), 0)

    def first_token_times(self, provider: str, *, streamed: bool) -> list[float]:
        """The recent times to first token noted for ``provider``, in seconds."""
        return [seconds for _, seconds in list(self._first_token.get((provider, streamed), ()))]

    def first_tokens_since(self, window_seconds: float, *, streamed: bool,
                           ) -> dict[str, list[float]]:
        """Per provider, its times to first token noted in the last ``window_seconds``
        (providers with none left out)."""
        since = self._clock() - window_seconds
        found: dict[str, list[float]] = {}
        for (provider, mode), times in list(self._first_token.items()):
            recent = [seconds for at, seconds in list(times) if at >= since]
            if mode == streamed and recent:
                found[provider] = recent
        return found

    def clear(self) -> None:
        self._samples.clear()
        self._first_token.clear()
        self._noted.clear()
        self.epoch += 1

    def summary(self, window_seconds: float) -> dict[str, Summary]:
        """Attempts of the last ``window_seconds``, per provider (providers with none left out)."""
        since = self._clock() - window_seconds
        result: dict[str, Summary] = {}
        for provider, samples in list(self._samples.items()):
            recent = [s for s in list(samples) if s[0] >= since]
            if recent:
                latencies = [ms for _, _, ms in recent]
                result[provider] = Summary(
                    count=len(recent),
                    ok=sum(1 for _, ok, _ in recent if ok),
                    latency_ms_sum=round(sum(latencies), 3),
                    latency_ms_max=round(max(latencies), 3),
                )
        return result


_stats = PerProcess(Stats)


def local() -> Stats:
    """This process's window (a new one after a fork)."""
    return _stats.get()
