"""When to try the same provider again before failing over: pure rules, no I/O, no clock.

A transient failure (429, 500/502/503/504, a connection lost before any byte of the
reply) is worth another try on the same provider after a short, jittered pause: most
clear up within a second, and the next provider may be slower, dearer or worse. A slow
provider's timeout, our own bad request or key, and a reply cut half-way are not: trying
again would only repeat them. A provider's ``Retry-After`` is obeyed when it is short
(up to ``RETRY_AFTER_CAP_SECONDS``); a longer one sends the request elsewhere at once.
The walk down the chain (:mod:`flexiai_django.walk`) does the waiting.
"""

from __future__ import annotations

import datetime
import email.utils
import math
from typing import TYPE_CHECKING

from flexiai_django.errors import (
    ProviderError,
    RateLimited,
    UpstreamConnectionError,
    UpstreamServerError,
)

if TYPE_CHECKING:
    from flexiai_django.conf import FlexiAISettings
    from flexiai_django.providers.base import ProviderConfig

#: Upstream statuses that say "not now" rather than "never": retried on the same provider.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


def transient(exc: ProviderError) -> bool:
    """Whether another try on the same provider may well succeed."""
    if isinstance(exc, RateLimited | UpstreamServerError):
        return exc.status in TRANSIENT_STATUSES
    return isinstance(exc, UpstreamConnectionError) and not exc.replied


def delay(exc: ProviderError, retries: int, provider: ProviderConfig,
          settings: FlexiAISettings, rand: float, spent: float = 0.0) -> float | None:
    """Seconds to wait before trying ``provider`` again, or ``None`` to fail over now.

    Args:
        exc: how the last try failed.
        retries: retries already made on this provider for this request.
        rand: uniform in [0, 1): full jitter, so workers that failed together do not
            come back together.
        spent: seconds already spent on this provider for this request; the waits and
            tries together stay within its ``timeout``.
    """
    if retries >= provider.max_retries or not transient(exc):
        return None
    if exc.retry_after is not None:
        if exc.retry_after > settings.RETRY_AFTER_CAP_SECONDS:
            return None
        wait = exc.retry_after
    else:
        wait = rand * settings.RETRY_BACKOFF_SECONDS * 2 ** retries
    return wait if spent + wait < provider.timeout else None


def retry_after_seconds(value: str, now: float) -> float | None:
    """A ``Retry-After`` header as seconds from ``now``: delay-seconds or an HTTP date
    (RFC 9110 §10.2.3); ``None`` when it is neither. A date in the past means now."""
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": HTTP dates are always GMT
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - now)
