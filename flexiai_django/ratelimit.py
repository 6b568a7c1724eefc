"""Per-client request limits: one budget per key for every worker, kept in Redis.

The rule is a sliding log. Each admitted request is one timestamp, and a request at
``now`` is admitted only while fewer than ``per_minute`` timestamps lie in
``(now - 60 s, now]``. Refused requests are not recorded.

Guarantee: for a fixed ``per_minute`` and while Redis answers, no half-open 60-second
interval ``[t, t + 60)`` of the Redis clock (or of the injected ``clock``) holds more
than ``per_minute`` admitted requests for one key, across every process that shares
the Redis server and ``key_prefix``. Why: the last admission inside such an interval
saw every earlier one in it, and there were fewer than ``per_minute``. A fixed window
or GCRA would let up to twice the limit through around a boundary, so neither is used.
``retry_after`` is exact: a request that waits that long is admitted, unless
another request takes the freed slot first.

* One Lua script reads, decides and writes atomically, with Redis ``TIME`` (an
  injected clock is passed as ``now``, as ``breaker.lua`` does). Times are whole
  microseconds, because Lua turns numbers into strings with only 14 digits. The key
  expires 60 s after its last admission, so an idle client leaves nothing behind.
  Memory per active key grows with ``per_minute``: that is what exactness costs.
* If Redis cannot be reached, each process counts on its own with the same rule
  (:func:`decide`) for ``retry_seconds``, then tries Redis again. Until it answers,
  the guarantee holds in each process, not across them. Requests admitted in a process
  are not copied to Redis when it comes back.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from django.dispatch import receiver

from flexiai_django import signals
from flexiai_django.breakers.redis_store import REDIS_ERRORS, fail_fast_client
from flexiai_django.conf import get_settings
from flexiai_django.redis_outage import RedisOutage

WINDOW_US = 60_000_000
"""The window in microseconds. Timestamps are whole microseconds in both paths."""

# KEYS[1]: sorted set of admitted requests (score: time in microseconds, member: unique id)
# ARGV: per_minute, now in microseconds ('' = Redis TIME), member
# Returns {allowed 1/0, remaining, retry_after in microseconds}. Keep in step with decide().
_SCRIPT = """
local key, limit, member = KEYS[1], tonumber(ARGV[1]), ARGV[3]
local now = tonumber(ARGV[2])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function int(n) return string.format('%.0f', n) end
redis.call('ZREMRANGEBYSCORE', key, '-inf', int(now - 60000000))
local used = redis.call('ZCARD', key)
if used < limit then
  redis.call('ZADD', key, int(now), member)
  redis.call('PEXPIRE', key, 60000)
  return {1, limit - used - 1, 0}
end
local oldest = redis.call('ZRANGE', key, used - limit, used - limit, 'WITHSCORES')
return {0, 0, tonumber(oldest[2]) + 60000000 - now}
"""


@dataclass(frozen=True)
class RateDecision:
    """One request's verdict; ``limit`` is 0 when the key is unlimited."""

    allowed: bool
    limit: int
    remaining: int
    retry_after: float  # seconds until a request would be admitted (0 when allowed)


def decide(log: list[int], limit: int, now: int) -> RateDecision:
    """The script's rule in pure Python, for one key; admits by appending to ``log``.

    ``log`` holds the admitted times in microseconds, sorted; ``now`` is microseconds.
    No I/O and no clock of its own, so tests drive it with any times they like.
    """
    del log[:bisect.bisect_right(log, now - WINDOW_US)]
    used = len(log)
    if used < limit:
        bisect.insort(log, now)
        return RateDecision(True, limit, limit - used - 1, 0.0)
    return RateDecision(False, limit, 0, (log[used - limit] + WINDOW_US - now) / 1e6)


def _micros(seconds: float) -> int:
    return round(seconds * 1_000_000)


class RateLimiter:
    """``alias`` (a django-redis cache, default ``FLEXIAI["REDIS_ALIAS"]``) or ``url``;
    ``socket_timeout``/``connect_timeout`` (seconds); ``retry_seconds`` (how long to count
    in-process after Redis failed); ``clock`` (tests: wall time and the retry back-off);
    ``shared=False`` counts in-process only, for deployments without Redis."""

    def __init__(
        self,
        alias: str | None = None,
        url: str | None = None,
        key_prefix: str = "flexiai",
        socket_timeout: float = 0.25,
        connect_timeout: float = 0.25,
        retry_seconds: float = 1.0,
        clock: Callable[[], float] | None = None,
        *,
        shared: bool = True,
    ) -> None:
        self._alias = alias
        self._url = url
        self._prefix = key_prefix
        self._timeouts = (socket_timeout, connect_timeout)
        self._clock = clock
        self._shared = shared
        self._outage = RedisOutage(
            "rate limiter lost Redis (%s); counting in this process",  # never the client's key
            "rate limiter reconnected to Redis; dropping in-process counts", retry_seconds,
            clock=clock or time.monotonic, connected=shared)
        self._client: redis.Redis | None = None
        self._script: Any = None
        self._lock = threading.Lock()
        self._local: dict[str, list[int]] = {}
        self._swept = 0

    # -- Redis ---------------------------------------------------------------------------

    def _redis(self) -> Any:
        """The registered script, built on first use (settings are read then, not earlier)."""
        if self._script is None:
            with self._lock:
                if self._script is None:
                    client = fail_fast_client(self._url, self._alias, *self._timeouts)
                    self._client = client
                    self._script = client.register_script(_SCRIPT)
        return self._script

    def key_name(self, key: str) -> str:
        """The Redis key for ``key``; the braces keep it on one Redis Cluster slot."""
        return f"{self._prefix}:rate:{{{key}}}"

    @property
    def connected(self) -> bool:
        return self._outage.connected

    def _uses_redis(self) -> bool:
        return self._shared and self._outage.retry_due

    def _failed(self, exc: BaseException) -> None:
        self._outage.failed(exc)

    def _succeeded(self) -> None:
        if self._outage.succeeded():
            with self._lock:
                self._local.clear()

    def _now_arg(self) -> str:
        return "" if self._clock is None else str(_micros(self._clock()))

    # -- in-process ----------------------------------------------------------------------

    def _hit_locally(self, key: str, per_minute: int) -> RateDecision:
        now = _micros(self._clock() if self._clock else time.time())
        with self._lock:
            if now - self._swept >= WINDOW_US:  # forget idle keys, as the Redis TTL does
                self._swept = now
                cutoff = now - WINDOW_US
                for idle in [k for k, log in self._local.items() if not log or log[-1] <= cutoff]:
                    del self._local[idle]
            return decide(self._local.setdefault(key, []), per_minute, now)

    # -- public --------------------------------------------------------------------------

    def hit(self, key: str, per_minute: int) -> RateDecision:
        """Count one request for ``key``; ``per_minute <= 0`` means no limit (no Redis call)."""
        if per_minute <= 0:
            return RateDecision(True, 0, 0, 0.0)
        if self._uses_redis():
            try:
                allowed, remaining, retry_us = self._redis()(
                    keys=[self.key_name(key)],
                    args=[per_minute, self._now_arg(), uuid.uuid4().hex[:16]])
            except REDIS_ERRORS as exc:
                self._failed(exc)
            else:
                self._succeeded()
                return RateDecision(bool(allowed), per_minute, int(remaining),
                                    int(retry_us) / 1e6)
        return self._hit_locally(key, per_minute)

    async def ahit(self, key: str, per_minute: int) -> RateDecision:
        """:meth:`hit` for async code: Redis I/O runs in a thread, never on the loop."""
        if per_minute <= 0 or not self._uses_redis():
            return self.hit(key, per_minute)  # no I/O on this path
        return await asyncio.to_thread(self.hit, key, per_minute)


# -- the process-wide limiter ------------------------------------------------------------

_OPTIONS = ("alias", "url", "key_prefix", "socket_timeout", "connect_timeout", "retry_seconds")
_limiter: tuple[int, RateLimiter] | None = None
_limiter_lock = threading.Lock()


def get_limiter() -> RateLimiter:
    """This process's limiter: on the breaker store's Redis when that store is shared,
    in-process otherwise. Rebuilt in a forked child, like the breaker store."""
    global _limiter
    current = _limiter
    if current is not None and current[0] == os.getpid():
        return current[1]
    from flexiai_django.breakers import get_store

    shared = bool(get_store().describe()["shared"])
    with _limiter_lock:
        if _limiter is None or _limiter[0] != os.getpid():
            options = get_settings().BREAKER_STORE.get("OPTIONS", {}) if shared else {}
            chosen = {name: options[name] for name in _OPTIONS if name in options}
            _limiter = (os.getpid(), RateLimiter(shared=shared, **chosen))
        return _limiter[1]


@receiver(signals.settings_reloaded)
def _drop_limiter(**kwargs: Any) -> None:
    global _limiter
    with _limiter_lock:
        _limiter = None
