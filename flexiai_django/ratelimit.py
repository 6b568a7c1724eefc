"""Per-client request limits shared by every worker through Redis.

A sliding log: each admitted request is a timestamp in a sorted set, and a request is
admitted only while fewer than ``per_minute`` timestamps lie in the last 60 seconds, so
no 60-second window ever holds more than ``per_minute`` admitted requests (GCRA would
allow a burst plus refill inside one window). One Lua call decides and records,
atomically, with Redis's clock; keys expire when idle. If Redis is unreachable the
limiter counts in this process with the same rule until Redis answers again.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from django.dispatch import receiver
from redis.backoff import NoBackoff
from redis.retry import Retry

from flexiai_django import signals
from flexiai_django.breakers.redis_store import REDIS_ERRORS, client_for_alias
from flexiai_django.conf import get_settings

WINDOW = 60.0

_SCRIPT = """
local key, limit, member = KEYS[1], tonumber(ARGV[1]), ARGV[3]
local now = tonumber(ARGV[2])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - 60)
local used = redis.call('ZCARD', key)
if used < limit then
  redis.call('ZADD', key, now, member)
  redis.call('PEXPIRE', key, 60000)
  return {1, limit - used - 1, '0'}
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return {0, 0, tostring(tonumber(oldest[2]) + 60 - now)}
"""


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    retry_after: float = 0.0


def decide(log: deque[float], limit: int, now: float) -> RateDecision:
    """The same rule in pure Python, over one key's log of admitted times."""
    while log and log[0] <= now - WINDOW:
        log.popleft()
    if len(log) < limit:
        log.append(now)
        return RateDecision(True, limit, limit - len(log))
    return RateDecision(False, limit, 0, log[0] + WINDOW - now)


class RateLimiter:
    def __init__(self, alias: str | None = None, url: str | None = None,
                 key_prefix: str = "flexiai", socket_timeout: float = 0.25,
                 connect_timeout: float = 0.25, retry_seconds: float = 1.0,
                 clock: Callable[[], float] | None = None, shared: bool = True) -> None:
        self._alias, self._url, self._prefix = alias, url, key_prefix
        self._timeouts = (socket_timeout, connect_timeout)
        self._retry_seconds = retry_seconds
        self._clock = clock
        self._shared = shared
        self._client: redis.Redis | None = None
        self._script: Any = None
        self._down_until = 0.0
        self._local: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self.connected = shared

    def _redis(self) -> Any:
        if self._script is None:
            if self._url:
                self._client = redis.Redis.from_url(
                    self._url, socket_timeout=self._timeouts[0],
                    socket_connect_timeout=self._timeouts[1], retry=Retry(NoBackoff(), 0))
            else:
                alias = self._alias or get_settings().REDIS_ALIAS
                self._client = client_for_alias(alias, *self._timeouts)
            self._script = self._client.register_script(_SCRIPT)
        return self._script

    def _now(self) -> float:
        return self._clock() if self._clock else time.time()

    def _hit_locally(self, key: str, per_minute: int) -> RateDecision:
        with self._lock:
            return decide(self._local.setdefault(key, deque()), per_minute, self._now())

    def hit(self, key: str, per_minute: int) -> RateDecision:
        """Count one request for ``key``; ``per_minute <= 0`` means no limit."""
        if per_minute <= 0:
            return RateDecision(True, 0, 0)
        if not self._shared or time.monotonic() < self._down_until:
            return self._hit_locally(key, per_minute)
        now = "" if self._clock is None else repr(self._clock())
        try:
            allowed, remaining, retry = self._redis()(
                keys=[f"{self._prefix}:rate:{{{key}}}"],
                args=[per_minute, now, uuid.uuid4().hex])
        except REDIS_ERRORS:
            self.connected = False
            self._down_until = time.monotonic() + self._retry_seconds
            return self._hit_locally(key, per_minute)
        self.connected = True
        return RateDecision(bool(allowed), per_minute, int(remaining), float(retry))

    async def ahit(self, key: str, per_minute: int) -> RateDecision:
        """:meth:`hit` for async code: the Redis call runs in a thread, never on the loop."""
        if per_minute <= 0:
            return RateDecision(True, 0, 0)
        return await asyncio.to_thread(self.hit, key, per_minute)


_limiter: RateLimiter | None = None


def get_limiter() -> RateLimiter:
    """Shared through Redis when the breaker store is; otherwise per process."""
    global _limiter
    if _limiter is None:
        from flexiai_django.breakers import get_store

        _limiter = RateLimiter(shared=bool(get_store().describe()["shared"]))
    return _limiter


@receiver(signals.settings_reloaded)
def _drop_limiter(**kwargs: Any) -> None:
    global _limiter
    _limiter = None
