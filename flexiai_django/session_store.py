"""Where sessions live: Redis for the whole deployment, or this process's memory.

A session is one small Redis hash per caller and id (``provider``, ``model``) with a TTL
(``SESSION_TTL_SECONDS``) that every use refreshes. Its key carries the owner (the API
key's or user's id), so one caller can never read, move or delete another's session,
and two callers may pick the same id. Moving a session is a compare-and-set inside one
Lua script: of several workers that saw the pinned provider fail at once, the first
moves it and the others find it already moved, so a session never flaps.

Without a shared breaker store (no Redis) sessions live in this process's memory with
the same rules: right for one process only (``runserver``, a single worker). Any Redis
error raises :class:`SessionsUnavailable`: the API answers 503 and a chat request is
served without its pin.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from django.dispatch import receiver

from flexiai_django import signals
from flexiai_django.conf import get_settings
from flexiai_django.process_local import PerProcess
from flexiai_django.redis_clients import fail_fast_client
from flexiai_django.redis_outage import REDIS_ERRORS

#: Sessions one process keeps at most without Redis; the ones closest to expiry go first.
MEMORY_LIMIT = 10_000


@dataclass(frozen=True)
class Session:
    id: str
    provider: str | None
    model: str
    expires_at: float  # Unix time

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "object": "session", "provider": self.provider,
                "model": self.model, "expires_at": int(self.expires_at)}


class SessionsUnavailable(Exception):
    """The session store cannot be reached (Redis down or refusing writes)."""


class SessionStore(Protocol):
    def create(self, owner: str, session_id: str, model: str,
               provider: str | None) -> tuple[Session, bool]:
        """The session, made now unless it existed (then refreshed); True when made."""

    def get(self, owner: str, session_id: str) -> Session | None:
        """The session (its TTL refreshed), or None when unknown or expired."""

    def move(self, owner: str, session_id: str, old: str | None, new: str) -> Session | None:
        """Pin to ``new`` only if still pinned to ``old``; the session as it is now."""

    def delete(self, owner: str, session_id: str) -> bool:
        """True when a session was deleted."""

    def clear(self) -> None:
        """Forget every session (tests)."""


def _ttl() -> float:
    return float(get_settings().SESSION_TTL_SECONDS)


class MemorySessions:
    """This process's sessions (no Redis): the same rules, one process only."""

    def __init__(self, clock: Callable[[], float] = time.time,
                 limit: int = MEMORY_LIMIT) -> None:
        self._clock = clock
        self._limit = limit
        self._lock = threading.Lock()
        self._held: dict[tuple[str, str], Session] = {}

    def _live(self, key: tuple[str, str], now: float) -> Session | None:
        session = self._held.get(key)
        if session is not None and session.expires_at <= now:
            del self._held[key]
            return None
        return session

    def _keep(self, key: tuple[str, str], session: Session, now: float) -> Session:
        kept = Session(session.id, session.provider, session.model, now + _ttl())
        self._held[key] = kept
        if len(self._held) > self._limit:
            for old in sorted(self._held, key=lambda k: self._held[k].expires_at)[
                    :len(self._held) - self._limit]:
                del self._held[old]
        return kept

    def create(self, owner: str, session_id: str, model: str,
               provider: str | None) -> tuple[Session, bool]:
        key, now = (owner, session_id), self._clock()
        with self._lock:
            found = self._live(key, now)
            made = found is None
            return self._keep(key, found or Session(session_id, provider, model, 0), now), made

    def get(self, owner: str, session_id: str) -> Session | None:
        key, now = (owner, session_id), self._clock()
        with self._lock:
            found = self._live(key, now)
            return None if found is None else self._keep(key, found, now)

    def move(self, owner: str, session_id: str, old: str | None, new: str) -> Session | None:
        key, now = (owner, session_id), self._clock()
        with self._lock:
            found = self._live(key, now)
            if found is None:
                return None
            if found.provider == old:
                found = Session(found.id, new, found.model, 0)
            return self._keep(key, found, now)

    def delete(self, owner: str, session_id: str) -> bool:
        with self._lock:
            return self._live((owner, session_id), self._clock()) is not None and bool(
                self._held.pop((owner, session_id), None))

    def clear(self) -> None:
        with self._lock:
            self._held.clear()


# KEYS[1]: the session hash. ARGV: ttl in ms, then per script below.
# Every script returns {provider or '', model, remaining ms, made/moved 1/0} or nil.
_CREATE = """
local made = 0
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'provider', ARGV[2], 'model', ARGV[3])
  made = 1
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
local v = redis.call('HMGET', KEYS[1], 'provider', 'model')
return {v[1], v[2], tonumber(ARGV[1]), made}
"""
_GET = """
local v = redis.call('HMGET', KEYS[1], 'provider', 'model')
if not v[2] then return nil end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return {v[1], v[2], tonumber(ARGV[1]), 0}
"""
_MOVE = """
local v = redis.call('HMGET', KEYS[1], 'provider', 'model')
if not v[2] then return nil end
local moved = 0
if v[1] == ARGV[2] then
  redis.call('HSET', KEYS[1], 'provider', ARGV[3])
  v[1] = ARGV[3]
  moved = 1
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return {v[1], v[2], tonumber(ARGV[1]), moved}
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisSessions:
    """Sessions in Redis for every worker; ``alias``/``url``/``key_prefix`` as the
    breaker store's."""

    def __init__(self, alias: str | None = None, url: str | None = None,
                 key_prefix: str = "flexiai", socket_timeout: float = 0.25,
                 connect_timeout: float = 0.25) -> None:
        self._alias, self._url, self._prefix = alias, url, key_prefix
        self._timeouts = (socket_timeout, connect_timeout)
        self._scripts: dict[str, Any] | None = None
        self._client: Any = None
        self._lock = threading.Lock()

    def key_name(self, owner: str, session_id: str) -> str:
        return f"{self._prefix}:session:{{{owner}}}:{session_id}"

    def _run(self, script: str, owner: str, session_id: str, *args: str) -> Any:
        if self._scripts is None:
            with self._lock:
                if self._scripts is None:
                    client = fail_fast_client(self._url, self._alias, *self._timeouts)
                    self._client = client
                    self._scripts = {s: client.register_script(s)
                                     for s in (_CREATE, _GET, _MOVE)}
        ttl_ms = str(max(1, round(_ttl() * 1000)))
        try:
            return self._scripts[script](keys=[self.key_name(owner, session_id)],
                                         args=[ttl_ms, *args])
        except REDIS_ERRORS as exc:
            raise SessionsUnavailable(type(exc).__name__) from exc

    def _session(self, session_id: str, reply: Any) -> Session | None:
        if reply is None:
            return None
        provider = _text(reply[0]) if reply[0] else None
        return Session(session_id, provider, _text(reply[1]), time.time() + int(reply[2]) / 1000)

    def create(self, owner: str, session_id: str, model: str,
               provider: str | None) -> tuple[Session, bool]:
        reply = self._run(_CREATE, owner, session_id, provider or "", model)
        session = self._session(session_id, reply)
        assert session is not None
        return session, bool(reply[3])

    def get(self, owner: str, session_id: str) -> Session | None:
        return self._session(session_id, self._run(_GET, owner, session_id))

    def move(self, owner: str, session_id: str, old: str | None, new: str) -> Session | None:
        return self._session(session_id, self._run(_MOVE, owner, session_id, old or "", new))

    def delete(self, owner: str, session_id: str) -> bool:
        self._run(_GET, owner, session_id)  # builds the client
        try:
            return bool(self._client.delete(self.key_name(owner, session_id)))
        except REDIS_ERRORS as exc:
            raise SessionsUnavailable(type(exc).__name__) from exc

    def clear(self) -> None:
        self._run(_GET, "", "-")  # builds the client
        for key in self._client.scan_iter(match=f"{self._prefix}:session:*", count=500):
            self._client.delete(key)


_OPTIONS = ("alias", "url", "key_prefix", "socket_timeout", "connect_timeout")


def _build() -> SessionStore:
    """In Redis when the breaker store is shared, in this process's memory otherwise."""
    from flexiai_django.breakers import get_store

    if not get_store().describe()["shared"]:
        return MemorySessions()
    options = get_settings().BREAKER_STORE.get("OPTIONS", {})
    return RedisSessions(**{name: options[name] for name in _OPTIONS if name in options})


_sessions: PerProcess[SessionStore] = PerProcess(_build)


def get_sessions() -> SessionStore:
    """This process's session store, rebuilt in a forked child and on settings changes."""
    return _sessions.get()


@receiver(signals.settings_reloaded)
def _drop(**kwargs: Any) -> None:
    _sessions.reset()
