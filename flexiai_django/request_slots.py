"""The in-flight slots one request holds while it walks the chain (and streams).

An attempt takes its provider's slot (:mod:`flexiai_django.inflight`) once the breaker
admitted it, when the provider has a capacity or the alias's strategy weighs in-flight
counts; retries on the same provider keep it. It is freed when the walk moves on from the
provider, when the attempt is abandoned or loses a hedge, and in any case when the request
ends (a stream: when it ends or is dropped), whatever exception ends it.
"""

from __future__ import annotations

import asyncio

from flexiai_django import inflight, strategies
from flexiai_django.conf import get_settings
from flexiai_django.providers.base import ProviderConfig


class RequestSlots:
    """Provider name → the slot this request holds on it; ``strategy``: the alias's."""

    def __init__(self) -> None:
        self.strategy = strategies.PRIORITY
        self.held: dict[str, inflight.Slot] = {}

    def __bool__(self) -> bool:
        return bool(self.held)

    def needed(self, provider: ProviderConfig) -> bool:
        """Whether an attempt on ``provider`` takes a slot: it has a capacity, or the
        strategy weighs in-flight counts. Others make no extra round trip."""
        return provider.capacity is not None or self.strategy in strategies.COUNTED

    def _args(self, provider: ProviderConfig) -> tuple[str, int | None, str, bool]:
        tier = provider.tier if self.strategy == strategies.OVERFLOW else ""
        spilled = bool(tier) and strategies.overflowed(tier, get_settings().OVERFLOW_TIERS)
        return provider.name, provider.capacity, tier, spilled

    def hold(self, provider: ProviderConfig) -> bool:
        """Take ``provider``'s slot when it needs one; False: it is at capacity."""
        if provider.name in self.held or not self.needed(provider):
            return True
        slot = inflight.get_slots().acquire(*self._args(provider))
        if slot is not None:
            self.held[provider.name] = slot
        return slot is not None

    async def ahold(self, provider: ProviderConfig) -> bool:
        """:meth:`hold` for async code."""
        if provider.name in self.held or not self.needed(provider):
            return True
        slot = await inflight.get_slots().aacquire(*self._args(provider))
        if slot is not None:
            self.held[provider.name] = slot
        return slot is not None

    def release(self, name: str, soon: bool = False) -> None:
        """Free the slot held on provider ``name``, if any. On an event loop (or ``soon``)
        the Redis call is left to the renewing thread: no blocking, safe while cancelled."""
        slot = self.held.pop(name, None)
        if slot is None:
            return
        if not soon:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                inflight.get_slots().release(slot)
                return
        inflight.get_slots().release_soon(slot)

    def release_all(self, keep: str | None = None, soon: bool = False) -> None:
        """Free every slot held but ``keep``'s (a stream's writer)."""
        for name in [n for n in self.held if n != keep]:
            self.release(name, soon)
