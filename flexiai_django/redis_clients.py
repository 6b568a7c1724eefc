"""Redis clients for the parts that must fail fast: the breaker store and the rate limiter.

Each gets its own connection pool with short timeouts and no retries, so a dead or
frozen Redis costs a request one short wait rather than redis-py's default retries. The
server (plain, TLS or Sentinel) and its credentials come from a URL or from the
django-redis cache alias the project already configured.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlparse

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

from flexiai_django.conf import get_settings


def client_for_alias(alias: str, socket_timeout: float, connect_timeout: float) -> redis.Redis:
    """A client on the same server as django-redis's ``alias``, with its own fail-fast pool."""
    from django_redis import get_redis_connection

    return fail_fast_copy(get_redis_connection(alias).connection_pool, socket_timeout,
                          connect_timeout)


def fail_fast_copy(pool: redis.ConnectionPool, socket_timeout: float,
                   connect_timeout: float) -> redis.Redis:
    """A client on ``pool``'s server (plain, TLS or Sentinel) with a pool of its own:
    short timeouts and no retries."""
    kwargs = dict(pool.connection_kwargs)
    kwargs.update(socket_timeout=socket_timeout, socket_connect_timeout=connect_timeout,
                  retry=Retry(NoBackoff(), 0))
    if isinstance(pool, SentinelConnectionPool):
        kwargs.pop("connection_class", None)
        fresh: redis.ConnectionPool = SentinelConnectionPool(  # type: ignore[no-untyped-call]
            pool.service_name, pool.sentinel_manager, **kwargs)
    else:
        fresh = type(pool)(connection_class=pool.connection_class,
                           max_connections=pool.max_connections, **kwargs)
    return redis.Redis(connection_pool=fresh)


def sentinel_client(url: str, sentinels: Sequence[Sequence[str | int]],
                    socket_timeout: float, connect_timeout: float) -> redis.Redis:
    """The master named by ``url``'s host (``redis://:password@mymaster/0``), found through
    ``sentinels`` on every new connection: after a failover, the promoted replica."""
    parsed = urlparse(url)
    timeouts = {"socket_timeout": socket_timeout, "socket_connect_timeout": connect_timeout}
    sentinel = Sentinel([(str(host), int(port)) for host, port in sentinels],  # type: ignore[no-untyped-call]
                        sentinel_kwargs=timeouts, **timeouts)
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        parsed.hostname or "mymaster", db=int(parsed.path.strip("/") or 0),
        username=parsed.username, password=parsed.password,
        ssl=parsed.scheme == "rediss", retry=Retry(NoBackoff(), 0), **timeouts)
    return client


def fail_fast_client(url: str | None, alias: str | None, socket_timeout: float,
                     connect_timeout: float) -> redis.Redis:
    """A client for ``url`` (through FLEXIAI["REDIS_SENTINELS"] when set), else for
    django-redis's ``alias`` (default REDIS_ALIAS, which may itself use Sentinel): short
    timeouts and no retries, so a dead Redis costs one short wait."""
    sentinels = get_settings().REDIS_SENTINELS
    if url and sentinels:
        return sentinel_client(url, sentinels, socket_timeout, connect_timeout)
    if url:
        return redis.Redis.from_url(url, socket_timeout=socket_timeout,
                                    socket_connect_timeout=connect_timeout,
                                    retry=Retry(NoBackoff(), 0))
    return client_for_alias(alias or get_settings().REDIS_ALIAS, socket_timeout,
                            connect_timeout)
