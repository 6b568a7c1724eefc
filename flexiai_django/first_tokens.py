"""Deployment-wide time to first token per provider, for the capacity planner.

Each worker notes its times to first token in memory (:mod:`flexiai_django.recent_calls`);
the capacity planner runs in a process of its own that serves nothing and never hears
the workers' stats broadcast. So every ``STATS_PUBLISH_SECONDS`` each worker's broadcast
listener also writes its samples of the last ``STATS_WINDOW_SECONDS`` to Redis
(:meth:`FirstTokenBoard.share`: one script call, off the request path), and the planner
reads every live worker's samples and pools them (:func:`pooled_p95`).

Why pooled samples rather than each worker's p95: the p95 of the deployment's requests
weighs every request once. The largest of the workers' p95s would let a worker that
served three slow requests speak for one that served three hundred fast ones, and the
mean of them has no meaning. A worker sends at most ``FIRST_TOKEN_SAMPLES`` (200) samples
per provider and mode, rounded to the millisecond: about 1 KB each.

A provider's figure is the p95 (nearest rank) of its streams' first chunks, or, where
the deployment streamed nothing from it in the window, of its plain calls' whole answers
(what a plain call waits for first); none until :data:`MIN_SAMPLES` are pooled, so a
handful of slow requests does not scale a tier.

In Redis: the hash ``<prefix>:first-token`` (worker id → its samples as JSON) and the
sorted set ``<prefix>:first-token:seen`` (worker id → when it last wrote, Redis time).
A worker that stopped writing ``STATS_WINDOW_SECONDS + 2 × STATS_PUBLISH_SECONDS`` ago
(dead, or its samples all too old) is dropped by the next write or read, and both keys
expire when every worker has stopped. Without a shared store, or while Redis is out
(:mod:`flexiai_django.redis_outage`), nothing is written and a read pools only this
process's samples.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.dispatch import receiver

from flexiai_django import recent_calls, signals
from flexiai_django.breakers import beside_breakers
from flexiai_django.conf import get_settings
from flexiai_django.redis_outage import REDIS_ERRORS, RedisOutage
from flexiai_django.redis_script import SharedScript
from flexiai_django.worker import worker_id

QUANTILE = 0.95
#: Samples of a provider the deployment needs before its p95 is reported.
MIN_SAMPLES = 20
STREAMED, PLAIN = "streamed", "plain"

#: One worker's samples: mode (:data:`STREAMED`, :data:`PLAIN`) → provider → seconds.
Figures = Mapping[str, Mapping[str, Sequence[float]]]


def nearest_rank(samples: Sequence[float], quantile: float = QUANTILE) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(quantile * len(ordered)) - 1)]


def pooled_p95(workers: Iterable[Figures], min_samples: int = MIN_SAMPLES,
               ) -> dict[str, float]:
    """Provider → p95 time to first token (s) over every worker's samples together: its
    streams' where any worker streamed from it, else its plain calls'; providers with
    fewer than ``min_samples`` left out."""
    pooled: dict[str, dict[str, list[float]]] = {STREAMED: {}, PLAIN: {}}
    for figures in workers:
        for mode, pool in pooled.items():
            for provider, samples in figures.get(mode, {}).items():
                pool.setdefault(provider, []).extend(float(s) for s in samples)
    found: dict[str, float] = {}
    for provider in {*pooled[STREAMED], *pooled[PLAIN]}:
        samples = pooled[STREAMED].get(provider) or pooled[PLAIN].get(provider, [])
        if len(samples) >= min_samples:
            found[provider] = nearest_rank(samples)
    return found


def local_figures(window_seconds: float) -> dict[str, dict[str, list[float]]]:
    """This process's samples of the last ``window_seconds``, rounded to the ms."""
    stats = recent_calls.local()
    return {mode: {provider: [round(s, 3) for s in samples] for provider, samples
                   in stats.first_tokens_since(window_seconds, streamed=mode == STREAMED).items()}
            for mode in (STREAMED, PLAIN)}


def horizon_seconds() -> float:
    """How long a worker's samples count after it wrote them (see the module doc)."""
    settings = get_settings()
    return float(settings.STATS_WINDOW_SECONDS) + 2 * float(settings.STATS_PUBLISH_SECONDS)


# KEYS[1]: the samples hash, KEYS[2]: the last-write sorted set. ARGV[1]: horizon in ms,
# ARGV[2]: now in ms ('' = Redis TIME; tests write the past). Drops the stale workers.
_PRUNE = """
local horizon = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. (now - horizon))
if #stale > 0 then
  redis.call('HDEL', KEYS[1], unpack(stale))
  redis.call('ZREM', KEYS[2], unpack(stale))
end
"""
# ARGV[3]: worker id, ARGV[4]: its samples (JSON; '' forgets it). Returns 1.
_WRITE = _PRUNE + """
if ARGV[4] == '' then
  redis.call('HDEL', KEYS[1], ARGV[3])
  redis.call('ZREM', KEYS[2], ARGV[3])
else
  redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
  redis.call('ZADD', KEYS[2], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], horizon)
  redis.call('PEXPIRE', KEYS[2], horizon)
end
return 1
"""
# Returns every live worker's samples (JSON strings).
_READ = _PRUNE + """
return redis.call('HVALS', KEYS[1])
"""


class FirstTokenBoard:
    """Every worker's recent times to first token in Redis. ``shared=False``: never ask
    Redis (reads give this process's own). Redis options as the breaker store's."""

    def __init__(self, alias: str | None = None, url: str | None = None,
                 key_prefix: str = "flexiai", socket_timeout: float = 0.25,
                 connect_timeout: float = 0.25, retry_seconds: float = 1.0, *,
                 shared: bool = True) -> None:
        self.key = f"{key_prefix}:first-token"
        self.seen_key = f"{self.key}:seen"
        self._outage = RedisOutage(
            "first-token figures lost Redis (%s); not shared until it is back",
            "first-token figures reconnected to Redis", retry_seconds, connected=shared)
        self._script = SharedScript(_WRITE, self._outage, alias=alias, url=url,
                                    timeouts=(socket_timeout, connect_timeout), shared=shared,
                                    probe_key=f"{key_prefix}:first-token-probe")
        self._read: Any = None
        self._wrote_any = False

    def write(self, worker: str, figures: Figures, at_ms: int | None = None) -> None:
        """Store ``worker``'s samples (none: forget it); ``at_ms`` (tests): when, in
        Redis-clock milliseconds, instead of now."""
        if not self._script.usable():
            return
        empty = not any(figures.get(mode) for mode in (STREAMED, PLAIN))
        payload = "" if empty else json.dumps(figures, separators=(",", ":"))
        horizon_ms = max(1, round(horizon_seconds() * 1000))
        try:
            self._script(keys=[self.key, self.seen_key],
                         args=[horizon_ms, "" if at_ms is None else at_ms, worker, payload])
        except REDIS_ERRORS as exc:
            self._outage.failed(exc)

    def share(self) -> None:
        """This worker's samples of the window, as the stats loop calls it; nothing is
        written while it has none and had none at its last write."""
        figures = local_figures(get_settings().STATS_WINDOW_SECONDS)
        has_any = any(figures.values())
        if has_any or self._wrote_any:
            self.write(worker_id(), figures)
            self._wrote_any = has_any

    def workers(self) -> list[Figures]:
        """Every live worker's samples (this process's alone when Redis can't be read)."""
        if self._script.usable():
            try:
                if self._read is None:
                    self._read = self._script.client.register_script(_READ)
                found = self._read(keys=[self.key, self.seen_key],
                                   args=[max(1, round(horizon_seconds() * 1000)), ""])
            except REDIS_ERRORS as exc:
                self._outage.failed(exc)
            else:
                return [json.loads(raw) for raw in found]
        return [local_figures(get_settings().STATS_WINDOW_SECONDS)]

    def p95s(self) -> dict[str, float]:
        """Provider → p95 time to first token (s), deployment-wide (see :func:`pooled_p95`)."""
        return pooled_p95(self.workers())

    def clear(self) -> None:
        """Forget every worker's samples (tests)."""
        if self._script.shared:
            self._script.client.delete(self.key, self.seen_key)
        self._wrote_any = False


_board = beside_breakers(FirstTokenBoard)


def board() -> FirstTokenBoard:
    """This process's board (a new one after a fork or a settings change)."""
    return _board.get()


def p95s() -> dict[str, float]:
    """Provider → p95 time to first token in seconds, deployment-wide: the capacity
    planner's ``Sources.first_token``."""
    return board().p95s()


@receiver(signals.settings_reloaded)
def _drop(**kwargs: Any) -> None:
    _board.reset()

