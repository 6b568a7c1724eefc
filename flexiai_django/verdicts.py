"""What an attempt's end tells its provider's breaker.

Kept apart from the walk so the plain loops, streams and stream resumption record the
same way: ``success`` is ``True`` for an answer, ``False`` for an outage and ``None`` for
no verdict (a request error, a cancelled try), which still frees a half-open probe slot.
"""

from __future__ import annotations

from flexiai_django.breakers.state import Admission
from flexiai_django.breakers.store import BreakerStore
from flexiai_django.errors import ProviderError
from flexiai_django.providers.base import ProviderConfig


def success_of(exc: ProviderError) -> bool | None:
    """What the breaker records: ``False`` (a failure), or ``None`` for errors that are not
    outages. ``True`` is for answers; the store's ``record(success=…)`` takes this."""
    return False if exc.trips_breaker else None


def record(
    store: BreakerStore,
    provider: ProviderConfig,
    admission: Admission,
    success: bool | None,
    error: str | None = None,
) -> None:
    if admission.recorded:
        store.record(provider.breaker_name, provider.breaker, success=success,
                     probe=admission.probe, error=error)


async def arecord(
    store: BreakerStore,
    provider: ProviderConfig,
    admission: Admission,
    success: bool | None,
    error: str | None = None,
) -> None:
    if admission.recorded:
        await store.arecord(provider.breaker_name, provider.breaker, success=success,
                            probe=admission.probe, error=error)
