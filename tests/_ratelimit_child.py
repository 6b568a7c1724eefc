"""Child-process side of the rate-limit race test (no Django settings needed)."""

from flexiai_django.ratelimit import RateLimiter


def hammer(url, prefix, barrier, requests, per_minute):
    limiter = RateLimiter(url=url, key_prefix=prefix)
    barrier.wait()
    return sum(limiter.hit("shared", per_minute).allowed for _ in range(requests))
