"""In-flight slots and tier activity kept in this process, on an injectable clock.

The rules of :mod:`flexiai_django.inflight`'s Lua scripts, for a deployment without a
shared store and for the time Redis is out: the counts then cover this process only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

#: Seconds per tier-activity bucket.
BUCKET_SECONDS = 10


@dataclass(frozen=True)
class TierActivity:
    """Requests served by a tier's providers over a window, and how many of them had
    spilled past the first tier (:func:`flexiai_django.strategies.overflowed`)."""

    requests: int = 0
    overflows: int = 0


def bucket_of(now: float) -> int:
    return int(now // BUCKET_SECONDS)


def buckets_in(window_seconds: float, now: float) -> range:
    """The buckets a window ending now touches (the current one, partly filled, too)."""
    last = bucket_of(now)
    return range(last - max(1, int(-(-window_seconds // BUCKET_SECONDS))) + 1, last + 1)


class LocalSlots:
    """Slots per provider, each ending at its lease's expiry unless renewed."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._slots: dict[str, dict[str, float]] = {}
        self._activity: dict[tuple[str, str, int], int] = {}

    def _live(self, provider: str, now: float) -> dict[str, float]:
        slots = self._slots.setdefault(provider, {})
        for member in [m for m, until in slots.items() if until <= now]:
            del slots[member]
        return slots

    def acquire(self, provider: str, member: str, lease: float, capacity: int | None) -> bool:
        """Take a slot unless ``capacity`` slots are live."""
        with self._lock:
            now = self._clock()
            slots = self._live(provider, now)
            if capacity is not None and len(slots) >= capacity:
                return False
            slots[member] = now + lease
            return True

    def release(self, provider: str, member: str) -> None:
        with self._lock:
            self._slots.get(provider, {}).pop(member, None)

    def renew(self, held: Iterable[tuple[str, str]], lease: float) -> None:
        """Push the expiry of the live ``(provider, member)`` slots to ``lease`` from now."""
        with self._lock:
            now = self._clock()
            for provider, member in held:
                slots = self._live(provider, now)
                if member in slots:
                    slots[member] = now + lease

    def counts(self, providers: Iterable[str]) -> dict[str, int]:
        with self._lock:
            now = self._clock()
            return {p: len(self._live(p, now)) for p in providers}

    def note(self, tier: str, overflowed: bool) -> None:
        """Count a request served by ``tier`` (and an overflow, when it spilled)."""
        with self._lock:
            bucket = bucket_of(self._clock())
            self._activity = {k: v for k, v in self._activity.items()
                              if k[2] > bucket - 60}
            for kind in ("r", "o") if overflowed else ("r",):
                key = (tier, kind, bucket)
                self._activity[key] = self._activity.get(key, 0) + 1

    def activity(self, tiers: Iterable[str], window_seconds: float) -> dict[str, TierActivity]:
        with self._lock:
            span = buckets_in(window_seconds, self._clock())
            return {t: TierActivity(sum(self._activity.get((t, "r", b), 0) for b in span),
                                    sum(self._activity.get((t, "o", b), 0) for b in span))
                    for t in tiers}
