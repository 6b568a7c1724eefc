"""Child side of the multi-process rate-limit test: a worker process with its own limiter.

Spawned, so it imports nothing from the parent; ``url=`` means no Django settings are read.
"""

from flexiai_django.ratelimit import RateLimiter


def hammer(url, key_prefix, barrier, results, requests, per_minute):
    """Wait for every worker, then hit one shared key; report each decision."""
    limiter = RateLimiter(url=url, key_prefix=key_prefix, socket_timeout=10, connect_timeout=10)
    barrier.wait(timeout=60)
    decisions = [limiter.hit("shared", per_minute) for _ in range(requests)]
    results.put(([(d.allowed, d.remaining) for d in decisions], limiter.connected))
