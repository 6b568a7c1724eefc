"""Deployment-wide in-flight requests per provider, held as leases, and tier activity.

Public API (the status page, ``/providers``, ``flexiai_status`` and the capacity planner
read these):

* :func:`counts` ``(names=None) -> dict[str, int]``: provider name → requests in flight
  across the deployment (every enabled provider when ``names`` is None); one round trip.
* :func:`tier_activity` ``(window_seconds, tiers=None) -> dict[str, TierActivity]``: per
  tier, the requests its providers took over the last ``window_seconds`` (10 s buckets)
  through the ``overflow`` strategy, and how many of them spilled past the first tier.
* :func:`report` ``(providers)``: the in-flight counts of ``providers`` and of their tiers
  (with capacity), as the status page, ``/providers`` and ``flexiai_status`` show them.
* :func:`get_slots` ``()``: this process's :class:`InflightSlots` (``acquire`` /
  ``release``), used by the chain (:class:`flexiai_django.walk.Walk`).

A slot is a member of the Redis sorted set ``<prefix>:inflight:<provider>`` scored by its
lease's expiry (Redis TIME, so every host agrees). Taking one is one Lua call that drops
expired members and refuses when the provider's ``capacity`` is reached (the walk then
skips it as ``skipped:at_capacity``); freeing one is a ``ZREM``. Each process renews its
own open slots every ``INFLIGHT_LEASE_SECONDS / 3`` in one call from a daemon thread, so a
worker killed mid-request stops renewing and its slots are gone within
``INFLIGHT_LEASE_SECONDS``. The same thread sends the frees queued by async code (which
must not block its loop, and may be cancelled in a ``finally``).

Only requests that need it hold a slot: those to a provider with a capacity, and those
of an alias routed ``least-busy`` or ``overflow``. A plain ``priority`` request to an
uncapped provider makes no extra round trip. Without a shared store, or while Redis is
out (:mod:`flexiai_django.redis_outage`), slots are kept in the process
(:class:`~flexiai_django.inflight_local.LocalSlots`) and capacity holds per process.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.dispatch import receiver

from flexiai_django import metrics, signals, strategies
from flexiai_django.breakers import beside_breakers
from flexiai_django.conf import get_settings
from flexiai_django.inflight_local import BUCKET_SECONDS, LocalSlots, TierActivity, buckets_in
from flexiai_django.provider_cache import get_providers
from flexiai_django.redis_outage import REDIS_ERRORS, RedisOutage
from flexiai_django.redis_script import SharedScript
from flexiai_django.worker import worker_id

__all__ = ["InflightSlots", "Slot", "TierActivity", "counts", "get_slots", "tier_activity"]

logger = logging.getLogger("flexiai_django")

_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS[1]: the provider's slots; KEYS[2] (optional): its tier's activity hash.
# ARGV: member, lease ms, capacity (0: none), "1" when the request overflowed.
# Returns 1 (taken) or 0 (at capacity). Keep in step with LocalSlots.acquire / note.
_ACQUIRE = _NOW_MS + f"""
local lease = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local cap = tonumber(ARGV[3])
if cap > 0 and redis.call('ZCARD', KEYS[1]) >= cap then return 0 end
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease * 2)
if KEYS[2] then
  local bucket = math.floor(now / {BUCKET_SECONDS * 1000})
  if redis.call('HINCRBY', KEYS[2], 'r:' .. bucket, 1) == 1 then
    for _, f in ipairs(redis.call('HKEYS', KEYS[2])) do
      if tonumber(string.sub(f, 3)) < bucket - 60 then redis.call('HDEL', KEYS[2], f) end
    end
  end
  if ARGV[4] == '1' then redis.call('HINCRBY', KEYS[2], 'o:' .. bucket, 1) end
  redis.call('EXPIRE', KEYS[2], {60 * BUCKET_SECONDS})
end
return 1
"""

# KEYS: slot sets; ARGV[1]: lease ms, ARGV[i + 1]: this process's member in KEYS[i].
# XX: a slot freed meanwhile is not brought back.
_RENEW = _NOW_MS + """
local lease = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now + lease, ARGV[i + 1])
  redis.call('PEXPIRE', key, lease * 2)
end
return #KEYS
"""

_COUNTS = _NOW_MS + """
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('ZCOUNT', key, '(' .. now, '+inf') end
return out
"""

# KEYS: tier activity hashes; ARGV[1]: buckets to add up. Returns requests, overflows
# for each key in turn.
_ACTIVITY = _NOW_MS + f"""
local last = math.floor(now / {BUCKET_SECONDS * 1000})
local out = {{}}
for i, key in ipairs(KEYS) do
  local r, o = 0, 0
  for b = last - tonumber(ARGV[1]) + 1, last do
    r = r + tonumber(redis.call('HGET', key, 'r:' .. b) or '0')
    o = o + tonumber(redis.call('HGET', key, 'o:' .. b) or '0')
  end
  out[2 * i - 1], out[2 * i] = r, o
end
return out
"""


@dataclass(eq=False)
class Slot:
    """One request's hold on a provider; ``shared``: in Redis (else in the process)."""

    provider: str
    member: str
    shared: bool
    released: bool = field(default=False)


class InflightSlots:
    """This process's slots. ``shared=False``: never ask Redis. Redis options as the
    hedge budget's; ``clock`` (tests) times the local slots."""

    def __init__(
        self,
        alias: str | None = None,
        url: str | None = None,
        key_prefix: str = "flexiai",
        socket_timeout: float = 0.25,
        connect_timeout: float = 0.25,
        retry_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        shared: bool = True,
    ) -> None:
        self._prefix = key_prefix
        self.shared = shared
        self._outage = RedisOutage(
            "in-flight counts lost Redis (%s); counting in this process",
            "in-flight counts reconnected to Redis", retry_seconds,
            clock=time.monotonic, connected=shared)
        self._script = SharedScript(_ACQUIRE, self._outage, alias=alias, url=url,
                                    timeouts=(socket_timeout, connect_timeout),
                                    shared=shared, probe_key=f"{key_prefix}:inflight-probe")
        self._more: dict[str, Any] = {}
        self._clock = clock
        self.local = LocalSlots(clock)
        self._ids = itertools.count(1)
        self._me = f"{worker_id()}:{secrets.token_hex(3)}"  # unique per instance
        self._lock = threading.Lock()
        self._open: dict[str, Slot] = {}
        self._frees: deque[Slot] = deque()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # -- keys and scripts ----------------------------------------------------------------
    def key(self, provider: str) -> str:
        return f"{self._prefix}:inflight:{provider}"

    def activity_key(self, tier: str) -> str:
        return f"{self._prefix}:tier-activity:{tier}"

    def _run(self, source: str, keys: list[str], args: list[Any], client: Any = None) -> Any:
        """Run one of the other scripts (on ``client``: a pipeline)."""
        script = self._more.get(source)
        if script is None:
            script = self._more[source] = self._script.client.register_script(source)
        return script(keys=keys, args=args, client=client)

    # -- taking and freeing --------------------------------------------------------------
    def acquire(self, provider: str, capacity: int | None, tier: str = "",
                overflowed: bool = False) -> Slot | None:
        """A slot on ``provider``, or None when ``capacity`` slots are taken. ``tier``
        (non-empty): count the request in the tier's activity."""
        lease = float(get_settings().INFLIGHT_LEASE_SECONDS)
        member = f"{self._me}:{next(self._ids)}"
        slot: Slot | None = None
        if self._script.usable():
            keys = [self.key(provider)] + ([self.activity_key(tier)] if tier else [])
            try:
                taken = self._script(keys=keys, args=[member, int(lease * 1000),
                                                      capacity or 0, int(overflowed)])
            except REDIS_ERRORS as exc:
                self._outage.failed(exc)
            else:
                slot = Slot(provider, member, True) if taken else None
                return self._opened(slot)
        if self.local.acquire(provider, member, lease, capacity):
            slot = Slot(provider, member, False)
            if tier:
                self.local.note(tier, overflowed)
        return self._opened(slot)

    def _opened(self, slot: Slot | None) -> Slot | None:
        if slot is not None:
            with self._lock:
                self._open[slot.member] = slot
            metrics.inflight(slot.provider, 1)
            if slot.shared:
                self._ensure_thread()
        return slot

    async def aacquire(self, provider: str, capacity: int | None, tier: str = "",
                       overflowed: bool = False) -> Slot | None:
        """:meth:`acquire` with its Redis I/O in a thread, off the event loop."""
        if not self._script.may_use():
            return self.acquire(provider, capacity, tier, overflowed)
        return await asyncio.to_thread(self.acquire, provider, capacity, tier, overflowed)

    def _closed(self, slot: Slot) -> bool:
        """Mark ``slot`` freed here; False when it already was."""
        with self._lock:
            if slot.released:
                return False
            slot.released = True
            self._open.pop(slot.member, None)
        metrics.inflight(slot.provider, -1)
        if not slot.shared:
            self.local.release(slot.provider, slot.member)
        return True

    def release(self, slot: Slot) -> None:
        """Free ``slot`` now (blocking I/O when it is in Redis); twice is harmless."""
        if self._closed(slot) and slot.shared:
            try:
                self._script.client.zrem(self.key(slot.provider), slot.member)
            except REDIS_ERRORS as exc:  # its lease ends it
                self._outage.failed(exc)

    def release_soon(self, slot: Slot) -> None:
        """Free ``slot`` without I/O here: the renewing thread sends it at once."""
        if self._closed(slot) and slot.shared:
            self._frees.append(slot)
            self._wake.set()

    def held(self) -> list[Slot]:
        with self._lock:
            return list(self._open.values())

    # -- the renewing thread -------------------------------------------------------------
    def _ensure_thread(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._renew_forever,
                                                    name="flexiai-inflight", daemon=True)
                    self._thread.start()

    def _renew_forever(self) -> None:
        while True:
            lease = float(get_settings().INFLIGHT_LEASE_SECONDS)
            self._wake.wait(lease / 3)
            self._wake.clear()
            try:
                self.tick(lease)
            except Exception as exc:  # never let the thread die
                logger.debug("in-flight renewal failed: %s", type(exc).__name__)

    def tick(self, lease: float | None = None) -> None:
        """Send queued frees and renew every open slot (one pipelined round trip)."""
        lease = float(get_settings().INFLIGHT_LEASE_SECONDS) if lease is None else lease
        frees = []
        while self._frees:
            frees.append(self._frees.popleft())
        held = self.held()
        self.local.renew(((s.provider, s.member) for s in held if not s.shared), lease)
        shared = [s for s in held if s.shared]
        if not (frees or shared) or not self._script.usable():
            return
        try:
            with self._script.client.pipeline(transaction=False) as pipe:
                for slot in frees:
                    pipe.zrem(self.key(slot.provider), slot.member)
                if shared:
                    self._run(_RENEW, [self.key(s.provider) for s in shared],
                              [int(lease * 1000), *[s.member for s in shared]], pipe)
                pipe.execute()
        except REDIS_ERRORS as exc:
            self._outage.failed(exc)

    # -- reading -------------------------------------------------------------------------
    def counts(self, providers: Iterable[str]) -> dict[str, int]:
        """In flight per provider, deployment-wide (this process's while Redis is out)."""
        names = list(providers)
        if names and self._script.usable():
            try:
                found = self._run(_COUNTS, [self.key(n) for n in names], [])
            except REDIS_ERRORS as exc:
                self._outage.failed(exc)
            else:
                return {n: int(c) for n, c in zip(names, found, strict=True)}
        return self.local.counts(names)

    async def acounts(self, providers: Iterable[str]) -> dict[str, int]:
        if not self._script.may_use():
            return self.counts(providers)
        return await asyncio.to_thread(self.counts, list(providers))

    def tier_activity(self, tiers: Iterable[str], window_seconds: float,
                      ) -> dict[str, TierActivity]:
        names = list(tiers)
        if names and self._script.usable():
            buckets = len(buckets_in(window_seconds, 0.0))
            try:
                found = self._run(_ACTIVITY, [self.activity_key(t) for t in names], [buckets])
            except REDIS_ERRORS as exc:
                self._outage.failed(exc)
            else:
                return {t: TierActivity(int(found[2 * i]), int(found[2 * i + 1]))
                        for i, t in enumerate(names)}
        return self.local.activity(names, window_seconds)

    def clear(self) -> None:
        """Forget every slot and count, here and in Redis (tests, maintenance)."""
        with self._lock:
            self._open.clear()
        self._frees.clear()
        self.local = LocalSlots(self._clock)
        if self.shared:
            client = self._script.client
            for pattern in (self.key("*"), self.activity_key("*")):
                keys = list(client.scan_iter(match=pattern, count=500))
                if keys:
                    client.delete(*keys)


_slots = beside_breakers(InflightSlots)


def get_slots() -> InflightSlots:
    """This process's slots (new ones after a fork or a settings change)."""
    return _slots.get()


def counts(names: Iterable[str] | None = None) -> dict[str, int]:
    """Provider name → requests in flight across the deployment (see the module doc)."""
    if names is None:
        names = [p.name for p in get_providers()]
    return get_slots().counts(names)


def tier_activity(window_seconds: float,
                  tiers: Iterable[str] | None = None) -> dict[str, TierActivity]:
    """Tier → :class:`TierActivity` over the last ``window_seconds`` (see the module
    doc); by default the ``OVERFLOW_TIERS`` and every enabled provider's tier."""
    if tiers is None:
        found = dict.fromkeys(get_settings().OVERFLOW_TIERS)
        found.update(dict.fromkeys(p.tier for p in get_providers() if p.tier))
        tiers = list(found)
    return get_slots().tier_activity(tiers, window_seconds)


def report(providers: Sequence[strategies.Routable]) -> dict[str, Any]:
    """``{"in_flight": {provider: n}, "tiers": [{"tier", "in_flight", "capacity",
    "warming"}]}`` for ``providers`` (one round trip); a tier's capacity is None when one
    of its providers has none."""
    found = get_slots().counts([p.name for p in providers])
    loads = strategies.tier_loads(providers, found)
    return {"in_flight": found,
            "tiers": [{"tier": t.tier, "in_flight": t.inflight, "capacity": t.capacity,
                       "warming": t.warming} for t in loads.values()]}


@receiver(signals.settings_reloaded)
def _drop_slots(**kwargs: Any) -> None:
    _slots.reset()
