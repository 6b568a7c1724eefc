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
one, logging twice per request. A server that answers nothing (frozen, unreachable) is
also one flag for the whole process (:mod:`flexiai_django.redis_reach`), so its users
don't each wait out a timeout of their own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from flexiai_django.redis_reach import ServerReach

logger = logging.getLogger("flexiai_django")

REDIS_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, OSError)
"""What a Redis call may raise that means "shared state unavailable" (``redis.RedisError``
covers lost connections, timeouts, OOM, READONLY, LOADING, auth and script errors)."""

PROBE_TTL_MS = 10_000
#: A probe claimed longer ago than this is presumed lost (it raised something unexpected).
CLAIM_SECONDS = 5.0


def probe_writes(client: redis.Redis, key: str) -> None:
    """Raise unless Redis accepts a write now: ``SET key 1 PX …`` is refused with OOM
    (``noeviction`` over ``maxmemory``) and with READONLY on a replica, as the breaker and
    rate-limit scripts' writes are, while PING and reads still succeed."""
    client.set(key, b"1", px=PROBE_TTL_MS)


class RedisOutage:
    """Whether one component's Redis is usable; thread-safe, logs each transition once.

    With a server attached (:meth:`attach`), the process-wide flag of that server
    (:class:`~flexiai_django.redis_reach.ServerReach`) is consulted too: a timeout met by
    any user of the server keeps every user off it, without waiting out timeouts of its
    own, until a background PING says it answers; then this component's own probe write
    (:meth:`claim_probe`) ends its outage.
    """

    def __init__(self, lost: str, back: str, retry_seconds: float, *,
                 clock: Callable[[], float] = time.monotonic, connected: bool = True) -> None:
        """``lost`` is logged with ``%s`` for the error type, ``back`` on reconnecting."""
        self._lost = lost
        self._back = back
        self.retry_seconds = retry_seconds
        self._clock = clock
        self._down_until = 0.0
        self._probing: float | None = None  # when the probe in flight was claimed
        self._lock = threading.Lock()
        self._connected = connected
        self.server: ServerReach | None = None

    def attach(self, server: ServerReach) -> None:
        """Share ``server``'s reachability (called once the component's client exists)."""
        self.server = server

    @property
    def connected(self) -> bool:
        """False during this component's outage, and while its server is unreachable."""
        server = self.server
        return self._connected and (server is None or server.up)

    @property
    def retry_due(self) -> bool:
        """Whether Redis may be tried now: not inside this component's back-off, and its
        server not known to be unreachable (then the outage is this component's too,
        logged once, and no timeout is waited out). No I/O."""
        if self._clock() < self._down_until:
            return False
        server = self.server
        if server is None or server.may_call():
            return True
        self._mark_lost(server.error, back_off=False)
        return False

    @property
    def retry_in(self) -> float:
        """Seconds until Redis will be tried again (0 when it may be tried now)."""
        return max(0.0, self._down_until - self._clock())

    def failed(self, exc: BaseException) -> None:
        """Redis failed: stay away for ``retry_seconds``; log only if this starts an outage.
        A timeout or lost connection also marks the server unreachable for the process."""
        server = self.server
        if server is not None:
            server.failed(exc)
        self._mark_lost(exc, back_off=True)

    def _mark_lost(self, exc: BaseException | None, *, back_off: bool) -> None:
        with self._lock:
            was_connected, self._connected = self._connected, False
            self._probing = None
            if back_off:
                self._down_until = self._clock() + self.retry_seconds
        if was_connected:
            logger.warning(self._lost, type(exc).__name__ if exc else "unreachable")

    def claim_probe(self) -> bool:
        """During an outage, whether this caller runs the probe write (compare-and-set:
        one caller at a time; the others go on without Redis instead of each waiting on
        a probe of their own, which also made an outage end, and log, several times)."""
        with self._lock:
            now = self._clock()
            if self._connected or (self._probing is not None
                                   and now - self._probing < CLAIM_SECONDS):
                return False
            self._probing = now
            return True

    def succeeded(self) -> bool:
        """A probe write passed; True for exactly one caller per outage (which drops its
        local state), whatever the threads.

        Only a probe (:func:`probe_writes`) run while disconnected may call this: a read
        proves nothing on an OOM or read-only server, and a call that began before
        another thread's failure would end the outage it just started (a flap, logged
        twice).
        """
        if self._connected and not self._down_until and self._probing is None:  # hot path
            return False
        with self._lock:
            self._down_until = 0.0
            self._probing = None
            if self._connected:
                return False
            self._connected = True
        if self.server is not None:
            self.server.answered()
        logger.warning(self._back)
        return True
