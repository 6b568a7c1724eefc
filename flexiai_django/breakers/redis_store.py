"""One breaker state for the whole deployment, kept in Redis.

* Every outcome that can change state runs one Lua script (``breaker.lua``): read,
  decide, write, bump the version, all atomic, with Redis's clock.
* Each worker keeps a snapshot per breaker, refreshed by broadcasts (newer versions
  only) and re-read when older than ``snapshot_ttl``. A call to a CLOSED breaker with no
  recent failures, and its success, touch only the snapshot: no Redis round trip.
* This module decides what to read and write; ``snapshots.py`` holds the worker's view,
  ``redis_link.py`` when Redis may be used and the client, ``redis_codec.py`` the format.
* If Redis fails in any way (unreachable, timing out, out of memory, a read-only
  replica, loading, refusing our password: any ``RedisError``) the store falls back to
  an in-process store with the same rules for ``retry_seconds``, then tries again. An
  outage ends only when a write succeeds (such a server still answers reads); then
  snapshots are re-read. Redis calls use their own pool with short timeouts and no
  retries, so a dead Redis costs a request at most one short timeout.
* A Redis restarted empty (or wiped) does not close a breaker this worker knows to be
  OPEN, FORCED_OPEN or DISABLED: the worker writes its state back, only where the key is
  still absent (so workers re-seeding at once agree). ``clear()`` leaves a fresh token in
  ``<prefix>:breakers:cleared``: a breaker missing under a token this worker has not seen
  was cleared on purpose, and the worker adopts that.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import orjson
import redis

from flexiai_django.ids import hex_id
from flexiai_django.redis_outage import REDIS_ERRORS, probe_writes
from flexiai_django.worker import worker_id

from . import leases
from .memory import LocalBreakerStore
from .redis_codec import decode, lost_by_redis, parse_state, script_args, seed_of, text
from .redis_link import RedisLink
from .snapshots import Snapshots
from .state import Admission, BreakerConfig, BreakerState, State, decide_from_snapshot
from .store import BreakerStore

logger = logging.getLogger("flexiai_django")
__all__ = ["REDIS_ERRORS", "RedisBreakerStore"]


class RedisBreakerStore(BreakerStore):
    """OPTIONS: ``alias`` (a django-redis cache, default ``FLEXIAI["REDIS_ALIAS"]``) or
    ``url``; ``socket_timeout``/``connect_timeout`` (seconds); ``snapshot_ttl``;
    ``retry_seconds`` (how long to stay local after Redis failed); ``clock`` (tests)."""

    def __init__(
        self,
        alias: str | None = None,
        url: str | None = None,
        key_prefix: str = "flexiai",
        socket_timeout: float = 0.25,
        connect_timeout: float = 0.25,
        snapshot_ttl: float = 1.0,
        retry_seconds: float = 1.0,
        clock: Callable[[], float] | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._prefix = key_prefix
        self.snapshot_ttl = snapshot_ttl
        self._clock = clock
        self._rand = rand
        self._local = LocalBreakerStore(clock or time.time, rand)
        self._snapshots = Snapshots()
        self._cleared_key = f"{key_prefix}:breakers:cleared"
        self._seen_clear = ""  # the last clear() token this worker read
        self._link = RedisLink(url, alias, socket_timeout, connect_timeout, retry_seconds)
        self._outage = self._link.outage

    # -- plumbing ------------------------------------------------------------------------

    def _redis(self) -> redis.Redis:
        return self._link.client

    def _keys(self, name: str) -> list[str]:
        base = f"{self._prefix}:breaker:{{{name}}}"
        return [base, f"{base}:probes", f"{self._prefix}:breakers"]

    @property
    def retry_due(self) -> bool:
        """Whether Redis may be tried now (no I/O: the hot path asks this)."""
        return self._outage.retry_due

    def _usable(self) -> bool:
        return self._link.usable(self.ping)

    @property
    def connected(self) -> bool:
        return self._outage.connected

    def _failed(self, exc: BaseException) -> None:
        self._outage.failed(exc)

    def _succeeded(self) -> None:
        """A probe write passed (only that ends an outage: a read, or a call that began
        before another thread's failure, proves nothing)."""
        if self._outage.succeeded():
            # Stale at once (re-read soon), but open states stay as seeds; what this
            # worker learnt during the outage (its in-process store) comes first.
            self._snapshots.keep_only_seeds({**self.snapshots(), **self._local.all()})
            self._local.clear()

    def _now(self) -> float:
        return self._clock() if self._clock else time.time()

    def _eval(self, op: str, name: str, cfg: BreakerConfig, *, arg: str = "",
              probe: bool = False, error: str | None = None,
              seed: str | None = None) -> dict[str, Any] | None:
        """The script's answer, or ``None`` when Redis is unusable (use the local store)."""
        if not self._usable():
            return None
        args = script_args(
            op, name, cfg, rand=self._rand(), now=None if self._clock is None else self._clock(),
            arg=arg, probe=probe, error=error,
            member=f"{worker_id()}:{hex_id(32)}" if op == "acquire" else "",
            seed=self._snapshots.seed(name) if seed is None else seed,
            seen_clear=self._seen_clear)
        try:
            raw = self._link.run_script([*self._keys(name), self._cleared_key], args)
        except REDIS_ERRORS as exc:
            self._failed(exc)
            return None
        result: dict[str, Any] = orjson.loads(raw)
        if result.get("seeded"):
            logger.warning("breaker %s was missing from Redis (restarted empty?): "
                           "wrote back this worker's %s state", name, result["state"]["state"])
        return result

    def _fallback(self, name: str) -> LocalBreakerStore:
        """The in-process store, holding this breaker's open state if this worker knew it."""
        state = self._snapshots.latest(name)
        if state is not None and seed_of(state):
            self._local.keep(name, state)
        return self._local

    def _apply(self, name: str, result: dict[str, Any],
               before: BreakerState | None) -> BreakerState:
        state = parse_state(result["state"], result.get("probes") or [])
        self._snapshots.put(name, state)
        if result.get("transitioned"):
            # The state the script found, not this worker's snapshot (which may be stale).
            before = replace(before or BreakerState(), state=State(result["previous"]))
            self.transitioned(name, before, state)
        return state

    # -- snapshots -----------------------------------------------------------------------

    def snapshot(self, name: str, *, max_age: float | None = None) -> BreakerState | None:
        """This worker's view, if fresher than ``max_age`` (default ``snapshot_ttl``)."""
        return self._snapshots.fresh(name, self.snapshot_ttl if max_age is None else max_age)

    def snapshots(self) -> dict[str, BreakerState]:
        return self._snapshots.all()

    def apply_remote(self, name: str, state: BreakerState) -> bool:
        """A broadcast from another worker: taken only if newer than what we hold."""
        return self._snapshots.offer(name, state)

    def refresh(self) -> None:
        """Re-read every breaker from Redis (the listener calls this periodically)."""
        self.all()

    # -- the store interface -------------------------------------------------------------

    def _decided_locally(self, name: str, config: BreakerConfig) -> Admission | None:
        snap = self.snapshot(name)
        if snap is not None and self.retry_due:
            return decide_from_snapshot(snap, config, self._now())
        return None

    def _clean_success(self, name: str, success: bool | None, probe: bool) -> BreakerState | None:
        """A success on a CLOSED breaker with no recent failures changes nothing shared."""
        snap = self.snapshot(name)
        if (snap is not None and not probe and success is not False
                and snap.state is State.CLOSED and snap.failures == 0 and self.retry_due):
            return snap
        return None

    async def aacquire(self, name: str, config: BreakerConfig) -> Admission:
        """Decided on the event loop when the snapshot allows, else in a thread (Redis I/O)."""
        decision = self._decided_locally(name, config)
        if decision is not None:
            return decision
        return await asyncio.to_thread(self.acquire, name, config)

    async def arecord(self, name: str, config: BreakerConfig, *, success: bool | None,
                      probe: bool, error: str | None = None) -> BreakerState:
        unchanged = self._clean_success(name, success, probe)
        if unchanged is not None:
            return unchanged
        return await asyncio.to_thread(self.record, name, config, success=success, probe=probe,
                                       error=error)

    async def aget(self, name: str) -> BreakerState:
        return await asyncio.to_thread(self.get, name)

    async def aforce(self, name: str, to: State) -> BreakerState:
        return await asyncio.to_thread(self.force, name, to)

    def acquire(self, name: str, config: BreakerConfig) -> Admission:
        decision = self._decided_locally(name, config)
        if decision is not None:
            return decision
        snap = self.snapshot(name)
        result = self._eval("acquire", name, config)
        if result is None:
            return self._fallback(name).acquire(name, config)
        state = self._apply(name, result, snap)
        return Admission(
            allowed=bool(result["allowed"]),
            state=state,
            probe=bool(result["probe"]),
            retry_after=result.get("retry_after"),
            transitioned=bool(result["transitioned"]),
            recorded=bool(result["recorded"]),
            cooling_down=bool(result.get("cooling")),
        )

    def record(self, name: str, config: BreakerConfig, *, success: bool | None, probe: bool,
               error: str | None = None) -> BreakerState:
        unchanged = self._clean_success(name, success, probe)
        if unchanged is not None:
            return unchanged
        snap = self.snapshot(name)
        arg = "" if success is None else ("1" if success else "0")
        result = self._eval("record", name, config, arg=arg, probe=probe, error=error)
        if result is None:
            return self._fallback(name).record(name, config, success=success, probe=probe,
                                               error=error)
        return self._apply(name, result, snap)

    def record_active_probe(self, name: str, config: BreakerConfig, *, ok: bool,
                            error: str | None = None) -> BreakerState:
        snap = self.snapshot(name, max_age=float("inf"))
        result = self._eval("probed", name, config, arg="1" if ok else "0", error=error)
        if result is None:
            return self._fallback(name).record_active_probe(name, config, ok=ok, error=error)
        return self._apply(name, result, snap)

    def take_lease(self, key: str, seconds: float) -> str | None:
        """Deployment-wide (``<prefix>:probe-lease:<key>``); per process without Redis."""
        token = f"{worker_id()}:{uuid.uuid4().hex[:8]}"
        if self._usable():
            try:
                return token if leases.take(self._redis(), self._lease_key(key), token,
                                            seconds) else None
            except REDIS_ERRORS as exc:
                self._failed(exc)
        return self._local.take_lease(key, seconds)

    def settle_lease(self, key: str, token: str, seconds: float) -> None:
        if self._usable():
            try:
                leases.settle(self._redis(), self._lease_key(key), token, seconds)
            except REDIS_ERRORS as exc:
                self._failed(exc)
        self._local.settle_lease(key, token, seconds)

    def _lease_key(self, key: str) -> str:
        return f"{self._prefix}:probe-lease:{key}"
    def cool_down(self, name: str, config: BreakerConfig, seconds: float) -> BreakerState:
        if not seconds > 0:  # nothing to do (NaN included): no round trip
            return self.get(name)
        snap = self.snapshot(name)
        seconds = min(float(seconds), config.max_open_seconds)  # the script gets a finite number
        result = self._eval("cool_down", name, config, arg=repr(seconds))
        if result is None:
            return self._fallback(name).cool_down(name, config, seconds)
        return self._apply(name, result, snap)

    async def acool_down(self, name: str, config: BreakerConfig, seconds: float) -> BreakerState:
        return await asyncio.to_thread(self.cool_down, name, config, seconds)

    def force(self, name: str, to: State) -> BreakerState:
        if to not in (State.CLOSED, State.FORCED_OPEN, State.DISABLED):
            raise ValueError(f"cannot force a breaker into {to}")
        result = self._eval("force", name, BreakerConfig(), arg=to.value)
        if result is None:
            logger.warning("Redis unreachable: breaker %s forced to %s in this process only",
                           name, to.value)
            return self._fallback(name).force(name, to)
        return self._apply(name, result, self.snapshot(name, max_age=float("inf")))

    def _read(self, names: list[str]) -> dict[str, BreakerState]:
        client = self._redis()
        pipe = client.pipeline(transaction=False)
        for name in names:
            state_key, probes_key, _ = self._keys(name)
            pipe.hgetall(state_key)
            pipe.zrange(probes_key, 0, -1, withscores=True)
        pipe.get(self._cleared_key)
        started = self._snapshots.clock()
        replies = pipe.execute()
        cleared = text(replies[-1] or b"")
        states = {}
        for i, name in enumerate(names):
            fields, probes = replies[2 * i], replies[2 * i + 1]
            seed = self._snapshots.seed(name) if not fields else ""
            if seed and lost_by_redis(self._seen_clear, cleared):
                states[name] = self._reseed(name, seed)
                continue
            read = parse_state(decode(fields), [score for _, score in probes])
            states[name] = self.take_read(name, read, started)
        self._seen_clear = cleared or self._seen_clear
        return states

    def _reseed(self, name: str, seed: str) -> BreakerState:
        """Write this worker's open state back where Redis lost it (the script skips it
        if another worker was first); kept here if Redis fails meanwhile."""
        result = self._eval("seed", name, BreakerConfig(), seed=seed)
        if result is None:
            return self._snapshots.latest(name) or BreakerState()
        return self._apply(name, result, None)

    def take_read(self, name: str, read: BreakerState, started: float) -> BreakerState:
        """Keep a read unless a newer state arrived while it was on the wire (see
        :meth:`Snapshots.take_read`). A breaker still missing from Redis never gets here
        (``_read`` writes this worker's open state back)."""
        return self._snapshots.take_read(name, read, started)

    def get(self, name: str) -> BreakerState:
        if self._usable():
            try:
                state = self._read([name])[name]
            except REDIS_ERRORS as exc:
                self._failed(exc)
            else:
                return state
        return self._fallback(name).get(name)

    def all(self) -> dict[str, BreakerState]:
        if self._usable():
            try:
                indexed = {text(m) for m in self._redis().smembers(self._keys("")[2])}
                names = sorted(indexed | self._snapshots.seeded())
                states = self._read(names)
            except REDIS_ERRORS as exc:
                self._failed(exc)
            else:
                return states
        return {**self._snapshots.all(), **self._local.all()}

    def clear(self) -> None:
        """Forget every breaker, here and in Redis (tests, maintenance).

        A Redis error is raised after the local state is cleared: whoever asked to
        forget the shared state must know it was not.
        """
        try:
            client = self._redis()
            index = self._keys("")[2]
            names = [text(m) for m in client.smembers(index)]
            keys = [key for name in names for key in self._keys(name)[:2]]
            token = uuid.uuid4().hex
            pipe = client.pipeline(transaction=True)
            pipe.delete(index, *keys)
            pipe.set(self._cleared_key, token)
            pipe.execute()
            self._seen_clear = token
        except REDIS_ERRORS as exc:
            self._failed(exc)
            raise
        finally:
            self._snapshots.clear()
            self._local.clear()

    def ping(self) -> bool:
        """Try Redis now (even inside the back-off window); the listener uses it.

        A write, not PING: an out-of-memory or read-only server answers PING and reads
        but refuses every state change, so only a write says the outage is over.
        """
        try:
            probe_writes(self._redis(), f"{self._prefix}:probe")
        except REDIS_ERRORS as exc:
            self._failed(exc)
            return False
        self._succeeded()
        return True

    def describe(self) -> dict[str, Any]:
        return {"backend": type(self).__name__, "shared": True, "connected": self.connected}
