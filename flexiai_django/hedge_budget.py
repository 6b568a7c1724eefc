"""How many hedges the deployment may start: a share of hedged-alias requests, in Redis.

A hedge is an extra upstream call, so it is rationed for the whole deployment. The rule,
over the current and the previous minute of the Redis clock (so the allowance does not
drop to nothing at each minute boundary)::

    allowed  ⇔  HEDGE_BUDGET > 0  and  hedges < HEDGE_BUDGET × requests + BURST

``requests`` counts the requests of hedged aliases, ``hedges`` the hedges allowed.
:data:`BURST` lets a deployment with little traffic hedge at all (at 10 % of 5 requests a
minute, no hedge would ever fit): up to ``BURST`` hedges per two minutes beyond the share.
``HEDGE_BUDGET = 0`` turns hedging off.

Cost on the request path: a request is counted in this process without I/O; the counts
travel to Redis with the next hedge decision, or every :data:`SHIP_EVERY` requests, so a
request that never waits long enough to hedge seldom pays a Redis round trip. The counts
of a worker that has not shipped yet are missing, which only makes the cap stricter.

One Lua script counts and decides atomically (:data:`_SCRIPT`). Without a shared store
(the in-process breaker store), or while Redis fails (:mod:`flexiai_django.redis_outage`),
each process applies the same rule to its own counts (:class:`LocalWindow`): the cap
then holds per process.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from django.dispatch import receiver

from flexiai_django import signals
from flexiai_django.breakers import beside_breakers
from flexiai_django.conf import get_settings
from flexiai_django.redis_outage import REDIS_ERRORS, RedisOutage
from flexiai_django.redis_script import SharedScript

#: Hedges allowed per two minutes beyond ``HEDGE_BUDGET × requests``.
BURST = 2
#: Requests counted in this process before they are sent to Redis without a hedge decision.
SHIP_EVERY = 32
WINDOW_SECONDS = 60
#: The hash outlives the two windows it holds.
KEY_TTL_SECONDS = 3 * WINDOW_SECONDS

# KEYS[1]: a hash of counts, fields "r:<minute>" (requests) and "h:<minute>" (hedges).
# ARGV: requests to add, "1" to ask for a hedge ("0": only count), budget, burst,
#       now in seconds ('' = Redis TIME).
# Returns {allowed 1/0, requests, hedges} over this minute and the previous one.
# Keep in step with LocalWindow.
_SCRIPT = """
local key, add, want = KEYS[1], tonumber(ARGV[1]), ARGV[2] == '1'
local budget, burst, now = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
if not now then now = tonumber(redis.call('TIME')[1]) end
local minute = math.floor(now / 60)
local previous = minute - 1
for _, field in ipairs(redis.call('HKEYS', key)) do
  if tonumber(string.sub(field, 3)) < previous then redis.call('HDEL', key, field) end
end
local function count(kind, m) return tonumber(redis.call('HGET', key, kind .. m) or '0') end
local requests = redis.call('HINCRBY', key, 'r:' .. minute, add) + count('r:', previous)
local hedges = count('h:', minute) + count('h:', previous)
local allowed = 0
if want and budget > 0 and hedges < budget * requests + burst then
  redis.call('HINCRBY', key, 'h:' .. minute, 1)
  allowed, hedges = 1, hedges + 1
end
redis.call('EXPIRE', key, 180)
return {allowed, requests, hedges}
"""


def allows(requests: int, hedges: int, budget: float, burst: int = BURST) -> bool:
    """The rule: may one more hedge start, ``hedges`` having started for ``requests``?"""
    return budget > 0 and hedges < budget * requests + burst


class LocalWindow:
    """The script's rule over this process's counts (no Redis, or Redis down)."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, int], int] = {}

    def decide(self, add: int, want: bool, budget: float, now: float) -> bool:
        minute = int(now // WINDOW_SECONDS)
        self._counts = {k: v for k, v in self._counts.items() if k[1] >= minute - 1}
        key = ("r", minute)
        self._counts[key] = self._counts.get(key, 0) + add
        requests = self._counts[key] + self._counts.get(("r", minute - 1), 0)
        hedges = self._counts.get(("h", minute), 0) + self._counts.get(("h", minute - 1), 0)
        if want and allows(requests, hedges, budget):
            self._counts[("h", minute)] = self._counts.get(("h", minute), 0) + 1
            return True
        return False


class HedgeBudget:
    """The deployment's hedge allowance. ``shared=False``: per process only. Redis
    options as the rate limiter's (``url`` or ``alias``, timeouts, ``retry_seconds``);
    ``clock`` (tests) replaces Redis TIME and the local wall clock."""

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
            "hedge budget lost Redis (%s); rationing hedges in this process",
            "hedge budget reconnected to Redis", retry_seconds,
            clock=time.monotonic, connected=shared)
        self._script = SharedScript(_SCRIPT, self._outage, alias=alias, url=url,
                                    timeouts=(socket_timeout, connect_timeout),
                                    shared=shared, probe_key=f"{self.key}:probe")
        self._lock = threading.Lock()
        self._unshipped = 0
        self._local = LocalWindow()

    @property
    def key(self) -> str:
        return f"{self._prefix}:hedge-budget"

    def _now(self) -> float:
        return self._clock() if self._clock is not None else time.time()

    def count(self) -> bool:
        """Count one request of a hedged alias (no I/O); True when the counts are due to
        be shipped to Redis (:meth:`ship`)."""
        with self._lock:
            self._unshipped += 1
            self._local.decide(1, False, 0.0, self._now())
            return self._shared and self._unshipped >= SHIP_EVERY and self._outage.retry_due

    def _take_unshipped(self) -> int:
        with self._lock:
            taken, self._unshipped = self._unshipped, 0
            return taken

    def _ask(self, want: bool) -> bool:
        """Ship the counts and, when ``want``, ask for a hedge (blocking I/O)."""
        budget = float(get_settings().HEDGE_BUDGET)
        if self._script.usable():
            add = self._take_unshipped()
            now = "" if self._clock is None else repr(self._clock())
            try:
                allowed, _, _ = self._script(keys=[self.key],
                                             args=[add, int(want), budget, BURST, now])
            except REDIS_ERRORS as exc:
                self._outage.failed(exc)
                with self._lock:
                    self._unshipped += add
            else:
                return bool(allowed)
        if not want:
            return False
        with self._lock:
            return self._local.decide(0, True, budget, self._now())

    def allow(self) -> bool:
        """Whether one more hedge may start now; if so it is counted."""
        return self._ask(True)

    async def aallow(self) -> bool:
        """:meth:`allow` with its Redis I/O in a thread, off the event loop."""
        if not self._shared:
            return self._ask(True)
        return await asyncio.to_thread(self._ask, True)

    async def aship(self) -> None:
        """Send this process's request counts to Redis."""
        await asyncio.to_thread(self._ask, False)

    def clear(self) -> None:
        """Forget every count, here and in Redis (tests, maintenance)."""
        with self._lock:
            self._unshipped = 0
            self._local = LocalWindow()
        if self._shared:
            self._script.client.delete(self.key)


_budget = beside_breakers(HedgeBudget)


def get_budget() -> HedgeBudget:
    """This process's budget (a new one after a fork or a settings change)."""
    return _budget.get()


@receiver(signals.settings_reloaded)
def _drop_budget(**kwargs: Any) -> None:
    _budget.reset()
