"""One request's routing decision: the strategy's inputs, read, then its order.

:mod:`flexiai_django.strategies` decides; this module gathers what it decides on: the
deployment's in-flight counts (one Redis round trip, only for ``least-busy`` and
``overflow``) and the recent latency per provider, every worker's window together (this
worker's own and the summaries the others broadcast, see
:mod:`flexiai_django.broadcast`), recomputed at most every :data:`LATENCY_REFRESH_SECONDS`
so a request pays a dictionary lookup.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from flexiai_django import broadcast, inflight, recent_calls, strategies
from flexiai_django.conf import get_settings
from flexiai_django.providers.base import ProviderConfig
from flexiai_django.worker import worker_id

LATENCY_REFRESH_SECONDS = 1.0

P = TypeVar("P", bound=ProviderConfig)


def mean_latencies(summaries: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Provider → mean latency (ms) over several workers' summaries
    (:class:`recent_calls.Summary` per provider)."""
    total: dict[str, float] = {}
    calls: dict[str, int] = {}
    for summary in summaries:
        for provider, figures in summary.items():
            total[provider] = total.get(provider, 0.0) + float(figures["latency_ms_sum"])
            calls[provider] = calls.get(provider, 0) + int(figures["count"])
    return {p: total[p] / calls[p] for p in total if calls[p]}


class _Latencies:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._at = float("-inf")
        self._value: dict[str, float] = {}

    def get(self) -> dict[str, float]:
        now = time.monotonic()
        if now - self._at < LATENCY_REFRESH_SECONDS:
            return self._value
        with self._lock:
            if now - self._at >= LATENCY_REFRESH_SECONDS:
                self._value, self._at = self._read(), now
        return self._value

    def forget(self) -> None:
        """Read afresh on the next request (tests)."""
        self._at = float("-inf")

    @staticmethod
    def _read() -> dict[str, float]:
        settings = get_settings()
        horizon = time.time() - settings.STATS_WINDOW_SECONDS - 2 * settings.STATS_PUBLISH_SECONDS
        listener = broadcast.running_listener()
        heard = dict(listener.worker_stats) if listener is not None else {}
        summaries: list[Mapping[str, Any]] = [
            m.get("stats", {}) for w, m in heard.items()
            if w != worker_id() and m.get("sent_at", 0) >= horizon]
        summaries.append(recent_calls.local().summary(settings.STATS_WINDOW_SECONDS))
        return mean_latencies(summaries)


_latencies = _Latencies()


def latencies() -> dict[str, float]:
    """Provider → recent mean latency in ms (a stream's: its time to first chunk)."""
    return _latencies.get()


def latencies_forget() -> None:
    """The next :func:`latencies` reads the windows afresh (tests, settings changes)."""
    _latencies.forget()


def needs_counts(strategy: str) -> bool:
    return strategy in strategies.COUNTED


def ordered(strategy: str, providers: Sequence[P], counts: Mapping[str, int] | None = None,
            ) -> list[P]:
    """``providers`` (priority order) in ``strategy``'s order; the in-flight ``counts``
    are read when the strategy needs them and none are given."""
    if strategy == strategies.PRIORITY:
        return list(providers)
    if counts is None and needs_counts(strategy):
        counts = inflight.get_slots().counts([p.name for p in providers])
    settings = get_settings()
    return strategies.order(
        strategy, providers, counts=counts or {},
        latencies=latencies() if strategy == strategies.LATENCY else {},
        tiers=settings.OVERFLOW_TIERS, at=settings.OVERFLOW_AT,
        while_warming=settings.OVERFLOW_WHILE_WARMING)


async def acounts(strategy: str, providers: Sequence[ProviderConfig]) -> dict[str, int] | None:
    """The counts :func:`ordered` would read, read off the event loop (None: not needed)."""
    if not needs_counts(strategy):
        return None
    return await inflight.get_slots().acounts([p.name for p in providers])
