"""A worker's own view of the shared breakers: the last state it read, wrote or heard of.

The Redis store decides from this view on the hot path (no round trip while a snapshot
is fresh), and keeps a breaker's open state here as the seed to write back when Redis
lost it. No I/O: the store feeds it what Redis answered and what broadcasts brought, and
the clock is passed in (``time.monotonic`` by default).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .redis_codec import seed_of
from .state import BreakerState


class Snapshots:
    """``name -> (read at, state)``; the newest version wins, except a fresh read."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, tuple[float, BreakerState]] = {}

    def fresh(self, name: str, max_age: float) -> BreakerState | None:
        """The state if read less than ``max_age`` seconds ago."""
        entry = self._entries.get(name)
        if entry is None or self._clock() - entry[0] > max_age:
            return None
        return entry[1]

    def latest(self, name: str) -> BreakerState | None:
        """The state however old."""
        entry = self._entries.get(name)
        return None if entry is None else entry[1]

    def all(self) -> dict[str, BreakerState]:
        return {name: state for name, (_, state) in list(self._entries.items())}

    def put(self, name: str, state: BreakerState) -> None:
        """What Redis just answered: fresh from now."""
        self._entries[name] = (self._clock(), state)

    def offer(self, name: str, state: BreakerState) -> bool:
        """A broadcast from another worker: taken only if newer than what is held."""
        entry = self._entries.get(name)
        if entry is not None and entry[1].version >= state.version:
            return False
        self.put(name, state)
        return True

    def take_read(self, name: str, read: BreakerState, started: float) -> BreakerState:
        """Keep a read unless a newer state arrived while it was on the wire.

        Only what arrived after the read began (``started``, on this clock) can beat it:
        an older snapshot with a higher version means Redis lost the breaker and another
        worker wrote it again (versions started again), and the read is the truth.
        """
        current = self._entries.get(name)
        if current is not None and current[0] >= started and current[1].version > read.version:
            return current[1]
        self.put(name, read)
        return read

    def seed(self, name: str) -> str:
        """The fields to write back if Redis lost this breaker, or ``""``."""
        return seed_of(self.latest(name))

    def seeded(self) -> set[str]:
        """The breakers held in a state worth writing back (open, forced open, disabled)."""
        return {name for name, (_, state) in list(self._entries.items()) if seed_of(state)}

    def keep_only_seeds(self, states: dict[str, BreakerState]) -> None:
        """After an outage: hold only the open states of ``states``, stale at once (so each
        is re-read from Redis before it decides anything)."""
        self._entries = {name: (float("-inf"), state) for name, state in states.items()
                         if seed_of(state)}

    def clear(self) -> None:
        self._entries.clear()

    def clock(self) -> float:
        return self._clock()
