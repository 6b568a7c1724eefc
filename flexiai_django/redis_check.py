"""What ``manage.py flexiai_redis`` finds out about each Redis the app is configured with.

The same list as the start-up credentials check (:func:`redis_credentials.targets`: the
django-redis caches, the breaker store's URL, channels-redis's hosts), each asked more
than PING: server version, memory, eviction policy and whether a write lands, because a
full (``noeviction``) or demoted (``READONLY``) server answers PING and still breaks the
app. Nothing here prints a password: targets are named with redacted URLs.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import redis

from flexiai_django.redis_credentials import problem, targets

#: The write probe's key: under the ``flexiai`` prefix an ACL rule for the app allows.
WRITE_KEY = "flexiai:redis-check:"


@dataclass(frozen=True)
class RedisCheck:
    """One Redis as it answered now; ``ok`` means PING and a write both worked."""

    target: str
    ok: bool
    ping_ms: float | None = None
    version: str | None = None
    used_memory: str | None = None
    maxmemory_policy: str | None = None
    writable: bool | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _error(exc: BaseException) -> str:
    return problem(exc) or f"{type(exc).__name__}: {exc}"


def _policy(client: redis.Redis) -> str | None:
    """The eviction policy, or None when the ACL user may not run CONFIG GET."""
    try:
        reply: dict[Any, Any] = client.config_get("maxmemory-policy")
    except redis.ResponseError:
        return None
    value = reply.get("maxmemory-policy", reply.get(b"maxmemory-policy"))
    return value.decode() if isinstance(value, bytes) else value


def _writable(client: redis.Redis) -> tuple[bool, str | None]:
    key = WRITE_KEY + uuid.uuid4().hex
    try:
        client.set(key, "1", px=10_000)
        client.delete(key)
    except redis.RedisError as exc:
        return False, _error(exc)
    return True, None


def check(target: str, client: redis.Redis) -> RedisCheck:
    """PING (timed), INFO, the eviction policy and one write, on ``client``."""
    try:
        started = time.perf_counter()
        client.ping()
        ping_ms = (time.perf_counter() - started) * 1000
    except (redis.RedisError, OSError) as exc:
        return RedisCheck(target, ok=False, error=_error(exc))
    try:
        server: dict[str, Any] = client.info("server")
        memory: dict[str, Any] = client.info("memory")
    except redis.RedisError:  # an ACL user without INFO: still usable
        server, memory = {}, {}
    writable, error = _writable(client)
    return RedisCheck(target, ok=writable, ping_ms=round(ping_ms, 2),
                      version=server.get("redis_version"),
                      used_memory=memory.get("used_memory_human"),
                      maxmemory_policy=_policy(client), writable=writable, error=error)


def check_all() -> list[RedisCheck]:
    """One :class:`RedisCheck` per configured Redis (none without Redis)."""
    results = []
    for target, factory in targets():
        try:
            client = factory()
        except (redis.RedisError, OSError) as exc:
            results.append(RedisCheck(target, ok=False, error=_error(exc)))
            continue
        try:
            results.append(check(target, client))
        finally:
            client.close()
    return results
