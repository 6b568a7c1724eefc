"""Which parts that keep state in a shared backend work now, for ``/health``.

The breaker store, the rate limiter and the answer cache each track their own Redis
outage (:mod:`flexiai_django.redis_outage`); this reads their flags together.
"""

from __future__ import annotations

from flexiai_django import cache_tier
from flexiai_django.breakers import get_store
from flexiai_django.ratelimit import get_limiter


def shared_state_status() -> dict[str, bool]:
    """For ``/health``: whether each part that keeps state in a shared backend works now.

    ``breaker_store`` and ``rate_limiter`` are True when they count in Redis, or when
    they were never configured to (in-process only); ``answer_cache`` is False while the
    Django cache behind the answer cache is failing. All True means nothing is degraded
    by a Redis problem. Reads only in-process flags: no I/O.
    """
    store = get_store().describe()
    limiter = get_limiter().describe()
    return {
        "breaker_store": not store["shared"] or bool(store["connected"]),
        "rate_limiter": not limiter["shared"] or bool(limiter["connected"]),
        "answer_cache": cache_tier.connected(),
    }
