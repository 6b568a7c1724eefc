"""Where breaker state lives: the interface every store implements.

Callers (the fallback chain, :class:`~flexiai_django.breakers.Breaker`) only see this
interface, so the in-process store and the shared Redis store swap by setting.
A store applies the pure rules of :mod:`.state` atomically and reports transitions.
"""

from __future__ import annotations

import abc
from typing import Any

from flexiai_django import signals

from .state import Admission, BreakerConfig, BreakerState, State


class BreakerStore(abc.ABC):
    """Hooks a store implements; the async twins default to the sync ones (no I/O)."""

    @abc.abstractmethod
    def acquire(self, name: str, config: BreakerConfig) -> Admission:
        """May one call go out now? A HALF_OPEN admission holds a probe slot."""

    @abc.abstractmethod
    def record(
        self,
        name: str,
        config: BreakerConfig,
        *,
        success: bool | None,
        probe: bool,
        error: str | None = None,
    ) -> BreakerState:
        """Record an outcome (``None``: no verdict, just free the probe slot)."""

    @abc.abstractmethod
    def cool_down(self, name: str, config: BreakerConfig, seconds: float) -> BreakerState:
        """The provider asked for ``seconds`` of quiet (Retry-After): no call is admitted
        before then (capped at ``max_open_seconds``), whichever worker asks."""

    @abc.abstractmethod
    def get(self, name: str) -> BreakerState:
        """Current state; CLOSED and version 0 for a breaker never seen."""

    @abc.abstractmethod
    def all(self) -> dict[str, BreakerState]:
        """Every breaker this store knows, by name."""

    @abc.abstractmethod
    def force(self, name: str, to: State) -> BreakerState:
        """Admin override: CLOSED (reset), FORCED_OPEN or DISABLED."""

    @abc.abstractmethod
    def clear(self) -> None:
        """Forget every breaker (tests, and ``flexiai_reset --all``)."""

    def record_active_probe(self, name: str, config: BreakerConfig, *, ok: bool,
                            error: str | None = None) -> BreakerState:
        """An active probe's outcome (see :func:`.state.record_active_probe`)."""
        raise NotImplementedError(f"{type(self).__name__} does not take active probes")

    def take_lease(self, key: str, seconds: float) -> str | None:
        """Hold ``key`` for ``seconds`` if nobody holds it: the holder's token, or None.

        Leases pick one process among all that share this store to do a job (the active
        prober): a shared store's leases are deployment-wide, a local store's per process.
        """
        raise NotImplementedError(f"{type(self).__name__} has no leases")

    def settle_lease(self, key: str, token: str, seconds: float) -> None:
        """Make a lease still held with ``token`` end ``seconds`` from now (<= 0: now)."""
        raise NotImplementedError(f"{type(self).__name__} has no leases")

    async def aacquire(self, name: str, config: BreakerConfig) -> Admission:
        return self.acquire(name, config)

    async def arecord(
        self,
        name: str,
        config: BreakerConfig,
        *,
        success: bool | None,
        probe: bool,
        error: str | None = None,
    ) -> BreakerState:
        return self.record(name, config, success=success, probe=probe, error=error)

    async def acool_down(self, name: str, config: BreakerConfig, seconds: float) -> BreakerState:
        return self.cool_down(name, config, seconds)

    async def aget(self, name: str) -> BreakerState:
        return self.get(name)

    async def aforce(self, name: str, to: State) -> BreakerState:
        return self.force(name, to)

    def snapshot(self, name: str, *, max_age: float | None = None) -> BreakerState | None:
        """This worker's cached view of a shared breaker; local stores have none."""
        return None

    def snapshots(self) -> dict[str, BreakerState]:
        """Every snapshot this worker holds, however old (what it would decide from)."""
        return {}

    def apply_remote(self, name: str, state: BreakerState) -> bool:
        """Take a state broadcast by another worker; local stores ignore it."""
        return False

    def refresh(self) -> None:
        """Re-read shared state (after a reconnect, or when snapshots age)."""
        return None

    def transitioned(self, name: str, before: BreakerState, after: BreakerState) -> None:
        """Called by stores after each state change; tells listeners (broadcast, metrics)."""
        if after.version != before.version or after.state != before.state:
            signals.breaker_transition.send(
                sender=type(self), name=name, before=before, after=after
            )

    def describe(self) -> dict[str, Any]:
        """What health endpoints show about the store itself."""
        return {"backend": type(self).__name__, "shared": False, "connected": True}
