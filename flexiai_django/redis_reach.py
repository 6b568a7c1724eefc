"""Whether a Redis server answers at all: one flag per server, shared by the whole process.

The breaker store, the rate limiter, the hedge budget and the answer cache each talk to
Redis through their own client. When the server stops answering (frozen by SIGSTOP, a
dead host, a cut network) every one of them would otherwise find out on its own, by
waiting out its own socket timeout, and again after each of its back-offs: under load
that was about 90 requests each waiting 270–500 ms before the outage was recognised.

So the first timeout (or refused connection) any of them meets marks the *server*
unreachable for every user in the process (:meth:`ServerReach.failed`); from then on
:meth:`ServerReach.may_call` says no without I/O, and whether the server answers again
is found by one PING in a background thread every :data:`PROBE_SECONDS`, never on a
request. The calls already waiting inside Redis at the freeze pay one timeout each; no
later one does. A server that answers but refuses (out of memory, read-only, a script
error) is not unreachable: each user handles that on its own
(:mod:`flexiai_django.redis_outage`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from flexiai_django.process_local import PerProcess
from flexiai_django.redis_clients import fail_fast_copy

logger = logging.getLogger("flexiai_django")

#: Seconds between PINGs to a server that stopped answering (in a background thread).
PROBE_SECONDS = 0.5
#: The probe's own socket timeouts.
PROBE_TIMEOUT = 0.25


def unreachable(exc: BaseException | None) -> bool:
    """A timeout or a lost/refused connection, also when wrapped (django-redis's
    ``ConnectionInterrupted``); not an answer such as OOM, READONLY, LOADING or a
    refused password, which come back at once."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, redis.TimeoutError | OSError) or type(exc) is redis.ConnectionError:
            return True
        exc, seen = exc.__cause__, seen + 1
    return False


def _spawn(target: Callable[[], None]) -> None:
    threading.Thread(target=target, name="flexiai-redis-probe", daemon=True).start()


class ServerReach:
    """One server's reachability; thread-safe, no I/O except the background probe.

    ``probe`` raises unless the server answers (a PING); ``spawn`` runs it off the
    caller's thread; ``clock`` (tests) is monotonic seconds.
    """

    def __init__(self, name: str, probe: Callable[[], object], *,
                 every: float = PROBE_SECONDS, clock: Callable[[], float] = time.monotonic,
                 spawn: Callable[[Callable[[], None]], None] = _spawn) -> None:
        self.name = name
        self.every = every
        self.up = True
        self.error: BaseException | None = None
        self._probe = probe
        self._clock = clock
        self._spawn = spawn
        self._retry_at = 0.0
        self._probing = False
        self._lock = threading.Lock()

    def may_call(self) -> bool:
        """Whether to send a command now; while unreachable, starts the due probe (one at
        a time, in the background) and says no."""
        if self.up:
            return True
        with self._lock:
            if self.up:
                return True
            if self._probing or self._clock() < self._retry_at:
                return False
            self._probing = True
        self._spawn(self._run_probe)
        return False

    def failed(self, exc: BaseException) -> bool:
        """A command failed; True when that means the server is unreachable (then every
        user in the process stays off it until a probe succeeds). Logged once an outage."""
        if not unreachable(exc):
            return False
        with self._lock:
            was_up, self.up = self.up, False
            self.error = exc
            self._retry_at = self._clock() + self.every
        if was_up:
            logger.warning("Redis at %s is not answering (%s); this process stays off it "
                           "and tries a PING every %.1f s", self.name, type(exc).__name__,
                           self.every)
        return True

    def answered(self) -> None:
        """A command succeeded after all (a user's own probe write): the server answers."""
        if self.up:
            return
        with self._lock:
            was_up, self.up, self._retry_at = self.up, True, 0.0
        if not was_up:
            logger.warning("Redis at %s answers again", self.name)

    def forget(self) -> None:
        """Presume the server answers (tests); a probe in flight may still say otherwise."""
        with self._lock:
            self.up, self.error, self._retry_at = True, None, 0.0

    def _run_probe(self) -> None:
        try:
            self._probe()
        except Exception as exc:
            with self._lock:
                self._probing = False
                self.error = exc
                self._retry_at = self._clock() + self.every
            return
        with self._lock:
            self._probing = False
            was_up, self.up = self.up, True
        if not was_up:
            logger.warning("Redis at %s answers again", self.name)


def server_name(client: redis.Redis) -> str:
    """``host:port``, ``unix:path`` or ``sentinel:service``: never a password."""
    pool = client.connection_pool
    service = getattr(pool, "service_name", None)
    if service:
        return f"sentinel:{service}"
    kwargs = pool.connection_kwargs
    if kwargs.get("path"):
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


def _pinger(client: redis.Redis) -> Callable[[], object]:
    """A PING on a client of its own with short timeouts, whatever ``client``'s are."""
    own = fail_fast_copy(client.connection_pool, PROBE_TIMEOUT, PROBE_TIMEOUT)
    return own.ping


_servers: PerProcess[dict[str, ServerReach]] = PerProcess(dict)
_lock = threading.Lock()


def server_of(client: redis.Redis) -> ServerReach:
    """The process-wide flag of ``client``'s server (made on first use, again after a fork)."""
    name = server_name(client)
    servers = _servers.get()
    reach = servers.get(name)
    if reach is None:
        with _lock:
            reach = servers.get(name)
            if reach is None:
                reach = servers[name] = ServerReach(name, _pinger(client))
    return reach


def forget_servers() -> None:
    """Every server presumed reachable again (tests), also for the users holding its flag."""
    for reach in list(_servers.get().values()):
        reach.forget()
