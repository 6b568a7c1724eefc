"""When a shared Redis stops answering: stay in-process for a while, then try again.

The breaker store, the rate limiter and the answer cache fall back (to in-process state,
or to no cache) when Redis fails, retry after ``retry_seconds`` and log once per outage
(the error's type, never its text, which may carry a URL or a key).

*Every* Redis error counts, not only a lost connection: an out-of-memory server
(``OOM command not allowed``), a read-only replica (``READONLY``), a server still
loading its data, a refused password or a script error all leave the shared state
unusable, and none of them may turn into a 500. Such a server still answers PING and
reads, so an outage ends only when a *write* succeeds again (:func:`probe_writes`);
otherwise every successful read would end the outage and the next write start a new
one, logging twice per request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

logger = logging.getLogger("flexiai_django")

REDIS_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, OSError)
"""What a Redis call may raise that means "shared state unavailable" (``redis.RedisError``
covers lost connections, timeouts, OOM, READONLY, LOADING, auth and script errors)."""

PROBE_TTL_MS = 10_000


def probe_writes(client: redis.Redis, key: str) -> None:
    """Raise unless Redis accepts a write now: ``SET key 1 PX …`` is refused with OOM
    (``noeviction`` over ``maxmemory``) and with READONLY on a replica, as the breaker and
    rate-limit scripts' writes are, while PING and reads still succeed."""
    client.set(key, b"1", px=PROBE_TTL_MS)


class RedisOutage:
    """Whether one component's Redis is usable; thread-safe, logs each transition once."""

    def __init__(self, lost: str, back: str, retry_seconds: float, *,
                 clock: Callable[[], float] = time.monotonic, connected: bool = True) -> None:
        """``lost`` is logged with ``%s`` for the error type, ``back`` on reconnecting."""
        self._lost = lost
        self._back = back
        self.retry_seconds = retry_seconds
        self._clock = clock
        self._down_until = 0.0
        self._lock = threading.Lock()
        self.connected = connected

    @property
    def retry_due(self) -> bool:
        """Whether Redis may be tried now (always, unless it failed in the last while)."""
        return self._clock() >= self._down_until

    @property
    def retry_in(self) -> float:
        """Seconds until Redis will be tried again (0 when it may be tried now)."""
        return max(0.0, self._down_until - self._clock())

    def failed(self, exc: BaseException) -> None:
        """Redis failed: stay away for ``retry_seconds``; log only if this starts an outage."""
        with self._lock:
            was_connected, self.connected = self.connected, False
            self._down_until = self._clock() + self.retry_seconds
        if was_connected:
            logger.warning(self._lost, type(exc).__name__)

    def succeeded(self) -> bool:
        """A probe write passed; True when that ends an outage (the caller drops its
        local state).

        Only a probe (:func:`probe_writes`) run while disconnected may call this: a read
        proves nothing on an OOM or read-only server, and a call that began before
        another thread's failure would end the outage it just started (a flap, logged
        twice).
        """
        if self.connected and not self._down_until:  # the hot path: no lock
            return False
        with self._lock:
            self._down_until = 0.0
            if self.connected:
                return False
            self.connected = True
        logger.warning(self._back)
        return True
