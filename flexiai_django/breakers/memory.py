"""Breaker state in this process: the embedded default and the Redis store's fallback."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from . import state as rules
from .leases import LocalLeases
from .state import Admission, BreakerConfig, BreakerState, State
from .store import BreakerStore


class LocalBreakerStore(BreakerStore):
    """A dict behind one lock; every update runs the pure rules under it."""

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._clock = clock
        self._rand = rand
        self._lock = threading.Lock()
        self._states: dict[str, BreakerState] = {}
        self._leases = LocalLeases(clock)

    def acquire(self, name: str, config: BreakerConfig) -> Admission:
        with self._lock:
            before = self._states.get(name)
            if before is None:
                before = self._states[name] = BreakerState()
            if before.state is State.CLOSED and before.cooldown_until is None:
                return Admission(True, before)
            admission = rules.acquire(before, config, self._clock())
            self._states[name] = admission.state
        self.transitioned(name, before, admission.state)
        return admission

    def record(
        self,
        name: str,
        config: BreakerConfig,
        *,
        success: bool | None,
        probe: bool,
        error: str | None = None,
    ) -> BreakerState:
        with self._lock:
            before = self._states.get(name) or BreakerState()
            now = self._clock()
            if success is None:
                after = rules.release(before, probe=probe)
            elif success:
                after = rules.record_success(before, config, now, probe=probe)
                if after is before:
                    return after
            else:
                after = rules.record_failure(
                    before, config, now, self._rand(), probe=probe, error=error
                )
            self._states[name] = after
        self.transitioned(name, before, after)
        return after

    def record_active_probe(self, name: str, config: BreakerConfig, *, ok: bool,
                            error: str | None = None) -> BreakerState:
        with self._lock:
            before = self._states.get(name) or BreakerState()
            after = rules.record_active_probe(before, config, self._clock(), ok=ok, error=error)
            self._states[name] = after
        self.transitioned(name, before, after)
        return after

    def cool_down(self, name: str, config: BreakerConfig, seconds: float) -> BreakerState:
        with self._lock:
            before = self._states.get(name) or BreakerState()
            after = rules.cool_down(before, config, self._clock(), seconds)
            self._states[name] = after
        self.transitioned(name, before, after)
        return after

    def take_lease(self, key: str, seconds: float) -> str | None:
        return self._leases.take(key, seconds)

    def settle_lease(self, key: str, token: str, seconds: float) -> None:
        self._leases.settle(key, token, seconds)

    def get(self, name: str) -> BreakerState:
        with self._lock:
            return self._states.get(name) or BreakerState()

    def all(self) -> dict[str, BreakerState]:
        with self._lock:
            return dict(self._states)

    def force(self, name: str, to: State) -> BreakerState:
        with self._lock:
            before = self._states.get(name) or BreakerState()
            after = rules.force(before, to, self._clock())
            self._states[name] = after
        self.transitioned(name, before, after)
        return after

    def keep(self, name: str, state: BreakerState) -> None:
        """Start from ``state`` unless this store already has one (the Redis store's
        fallback keeps the open states it knew when Redis went away)."""
        with self._lock:
            self._states.setdefault(name, state)

    def clear(self) -> None:
        with self._lock:
            self._states.clear()
