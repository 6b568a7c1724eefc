"""Leases: one holder for a key at a time, so one process does a job for all of them.

The active prober takes ``<prefix>:probe-lease:<breaker>`` before probing, so a
deployment sends one probe per interval however many workers and replicas it runs. A
shared store holds leases in Redis (``SET NX PX``); an in-process store holds them in a
dict (one process, one prober). A lease ends by itself; its holder may end it earlier
or later with :func:`settle` / :meth:`LocalLeases.settle`, never someone else's.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import redis

#: Ends or re-times a lease only while the caller still holds it.
_SETTLE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local ms = tonumber(ARGV[2])
if ms > 0 then return redis.call('PEXPIRE', KEYS[1], ms) end
return redis.call('DEL', KEYS[1])
"""


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def take(client: redis.Redis, key: str, token: str, seconds: float) -> bool:
    """Hold ``key`` for ``seconds`` with ``token`` unless someone holds it."""
    return bool(client.set(key, token, nx=True, px=_ms(seconds)))


def settle(client: redis.Redis, key: str, token: str, seconds: float) -> None:
    """Make a lease held with ``token`` end ``seconds`` from now (<= 0: now)."""
    client.eval(_SETTLE, 1, key, token, _ms(seconds) if seconds > 0 else 0)


class LocalLeases:
    """Leases held in this process, on an injectable clock."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._held: dict[str, tuple[str, float]] = {}

    def take(self, key: str, seconds: float) -> str | None:
        with self._lock:
            now = self._clock()
            held = self._held.get(key)
            if held is not None and held[1] > now:
                return None
            token = uuid.uuid4().hex
            self._held[key] = (token, now + seconds)
            return token

    def settle(self, key: str, token: str, seconds: float) -> None:
        with self._lock:
            held = self._held.get(key)
            if held is None or held[0] != token:
                return
            if seconds <= 0:
                del self._held[key]
            else:
                self._held[key] = (token, self._clock() + seconds)
