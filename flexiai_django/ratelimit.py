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
* If Redis fails in any way (unreachable, timing out, out of memory, read-only, any
  ``RedisError``), the limiter stops asking it for ``retry_seconds``, then tries a
  write again (an OOM or read-only server still answers reads). Meanwhile
  ``RATE_LIMIT_FALLBACK`` decides, read at each call:

  - ``"share"`` (default): each process counts on its own with the same rule
    (:func:`decide`) and its share of the limit, ``ceil(limit / workers)``
    (:func:`fallback_share`); ``workers`` is ``RATE_LIMIT_FALLBACK_WORKERS``, or when
    that is ``None`` the workers this process heard from through the broadcast
    listener shortly before the outage, itself included (:func:`workers_heard`; frozen
    for the outage, as the broadcast rides on the same Redis). With the right worker
    count the deployment as a whole stays near the limit; the exact guarantee holds in
    each process, not across them.
  - ``"refuse"``: every limited request is refused with ``unavailable=True`` and
    ``retry_after`` = the time until Redis is tried again (the HTTP layer answers 503).

  Requests admitted in a process are not copied to Redis when it comes back.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from django.dispatch import receiver

from flexiai_django import signals
from flexiai_django.conf import get_settings
from flexiai_django.ids import hex_id
from flexiai_django.process_local import PerProcess
from flexiai_django.redis_outage import REDIS_ERRORS, RedisOutage
from flexiai_django.redis_script import SharedScript
from flexiai_django.worker import worker_id

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
    # Refused because the shared count is unavailable (Redis down, RATE_LIMIT_FALLBACK
    # "refuse"), not because the client used its budget: a 503, not a 429.
    unavailable: bool = False


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


def fallback_share(limit: int, workers: int) -> int:
    """One worker's part of ``limit`` while Redis is down: ``ceil(limit / workers)``.

    Rounded up so every worker admits at least one request; the deployment may then
    admit a little more than ``limit`` (at most ``workers - 1`` more), never less.
    """
    return math.ceil(limit / max(1, workers))


def workers_heard(last_heard: dict[str, float], me: str, now: float, within: float) -> int:
    """Distinct workers heard from in the last ``within`` seconds, ``me`` always included.

    ``last_heard`` maps a worker id to when it last spoke (its broadcast's ``sent_at``).
    """
    return len({w for w, at in last_heard.items() if now - at <= within} | {me})


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
        self._prefix = key_prefix
        self._clock = clock
        self._shared = shared
        self._outage = RedisOutage(
            "rate limiter lost Redis (%s); counting in this process",  # never the client's key
            "rate limiter reconnected to Redis; dropping in-process counts", retry_seconds,
            clock=clock or time.monotonic, connected=shared)
        self._script = SharedScript(_SCRIPT, self._outage, alias=alias, url=url,
                                    timeouts=(socket_timeout, connect_timeout),
                                    shared=shared, probe_key=f"{key_prefix}:probe")
        self._lock = threading.Lock()
        self._local: dict[str, list[int]] = {}
        self._swept = 0
        self._workers_at_outage: int | None = None

    # -- Redis ---------------------------------------------------------------------------

    def _redis_client(self) -> redis.Redis:
        return self._script.client

    def key_name(self, key: str) -> str:
        """The Redis key for ``key``; the braces keep it on one Redis Cluster slot."""
        return f"{self._prefix}:rate:{{{key}}}"

    @property
    def connected(self) -> bool:
        return self._outage.connected

    def describe(self) -> dict[str, Any]:
        """``shared``: counts through Redis when it answers; ``connected``: it does now."""
        return {"shared": self._shared, "connected": self.connected,
                "fallback": get_settings().RATE_LIMIT_FALLBACK}

    def _may_use_redis(self) -> bool:
        """No I/O: whether :meth:`hit` would try Redis now."""
        return self._script.may_use()

    def _uses_redis(self) -> bool:
        """Whether to count in Redis now (:meth:`SharedScript.usable`)."""
        return self._script.usable(on_lost=self._failed, on_back=self._back)

    def _failed(self, exc: BaseException) -> None:
        starts_outage = self._outage.connected
        self._outage.failed(exc)
        if starts_outage:
            # Before the broadcast (which rides on the same Redis) goes quiet too.
            self._workers_at_outage = _workers_heard_now()

    def _back(self) -> None:
        """Redis counts again: this process's own counts are dropped."""
        with self._lock:
            self._local.clear()
            self._workers_at_outage = None

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

    def _fallback_workers(self) -> int:
        """How many workers share the limit while Redis is down (see the module docstring)."""
        configured = get_settings().RATE_LIMIT_FALLBACK_WORKERS
        if configured is not None:
            return max(1, int(configured))
        if self._workers_at_outage is None:  # Redis was down from the start
            self._workers_at_outage = _workers_heard_now()
        return self._workers_at_outage

    def _hit_during_outage(self, key: str, per_minute: int) -> RateDecision:
        if get_settings().RATE_LIMIT_FALLBACK == "refuse":
            wait = self._outage.retry_in or self._outage.retry_seconds
            return RateDecision(False, per_minute, 0, wait, unavailable=True)
        return self._hit_locally(key, fallback_share(per_minute, self._fallback_workers()))

    # -- public --------------------------------------------------------------------------

    def hit(self, key: str, per_minute: int) -> RateDecision:
        """Count one request for ``key``; ``per_minute <= 0`` means no limit (no Redis call).

        While Redis is down the decision follows ``RATE_LIMIT_FALLBACK``: in ``"share"``
        mode ``limit`` is this worker's share, not the key's whole limit.
        """
        if per_minute <= 0:
            return RateDecision(True, 0, 0, 0.0)
        if not self._shared:
            return self._hit_locally(key, per_minute)
        if self._uses_redis():
            try:
                allowed, remaining, retry_us = self._script(
                    keys=[self.key_name(key)],
                    args=[per_minute, self._now_arg(), hex_id(64)])
            except REDIS_ERRORS as exc:
                self._failed(exc)
            else:  # not an end of outage: only the probe in _uses_redis ends one
                return RateDecision(bool(allowed), per_minute, int(remaining),
                                    int(retry_us) / 1e6)
        return self._hit_during_outage(key, per_minute)

    async def ahit(self, key: str, per_minute: int) -> RateDecision:
        """:meth:`hit` for async code: Redis I/O runs in a thread, never on the loop."""
        if per_minute <= 0 or not self._may_use_redis():
            return self.hit(key, per_minute)  # no I/O on this path
        return await asyncio.to_thread(self.hit, key, per_minute)


def _workers_heard_now() -> int:
    """Workers this process heard from through the broadcast listener lately, itself
    included; 1 when there is no listener (one process, or no shared channel layer)."""
    from flexiai_django import broadcast  # imports the breakers: not at module level

    shared = broadcast.running_listener()
    heard = dict(shared.worker_stats) if shared is not None else {}
    # Runs on a request's error path: a malformed message is skipped, never raised.
    last = {worker: float(message["sent_at"]) for worker, message in heard.items()
            if isinstance(message.get("sent_at"), int | float)}
    # A worker publishes its figures when they change, so an active one speaks at least
    # once per stats window: twice that is "lately".
    within = 2 * float(get_settings().STATS_WINDOW_SECONDS)
    return workers_heard(last, worker_id(), time.time(), within)


# -- the process-wide limiter ------------------------------------------------------------

_OPTIONS = ("alias", "url", "key_prefix", "socket_timeout", "connect_timeout", "retry_seconds")


def _build_limiter() -> RateLimiter:
    """On the breaker store's Redis when that store is shared, in-process otherwise."""
    from flexiai_django.breakers import get_store

    shared = bool(get_store().describe()["shared"])
    options = get_settings().BREAKER_STORE.get("OPTIONS", {}) if shared else {}
    chosen = {name: options[name] for name in _OPTIONS if name in options}
    return RateLimiter(shared=shared, **chosen)


_limiter = PerProcess(_build_limiter)


def get_limiter() -> RateLimiter:
    """This process's limiter, rebuilt in a forked child like the breaker store."""
    return _limiter.get()


@receiver(signals.settings_reloaded)
def _drop_limiter(**kwargs: Any) -> None:
    _limiter.reset()
