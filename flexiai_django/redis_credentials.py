"""Refuse to start when a configured Redis refuses our credentials or our TLS settings.

Everything else about Redis degrades: a Redis that is down, unreachable or frozen at
start must not stop the app (it serves with in-process breakers and re-syncs later). But
a wrong password, an ACL user without the commands the app runs, or a certificate that
fails verification never heals by waiting: left alone, each would look like an endless
outage ("degraded", local breakers in every worker). So each server process PINGs every
Redis it is configured with (the django-redis caches, the breaker store's own URL and
channels-redis's hosts) once at start and raises :class:`ImproperlyConfigured` naming
what is wrong; messages carry no password (URLs are shown with ``***``).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from redis.exceptions import NoPermissionError

logger = logging.getLogger("flexiai_django")

TIMEOUT = 1.0  # seconds: a start-up check, not a request path


def redacted(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def problem(exc: BaseException) -> str | None:
    """What a failed PING says about our configuration; None when Redis is only unreachable."""
    if isinstance(exc, redis.AuthenticationError) or "WRONGPASS" in str(exc):
        return ("refused our credentials (authentication failed): check the user name and "
                "password in the URL, and that the ACL user exists and is on")
    if isinstance(exc, NoPermissionError):
        return ("accepted our credentials, but the ACL user may not run the commands the "
                "app needs (README: Redis with TLS and ACLs has the rule)")
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return (f"failed TLS certificate verification ({cause.verify_message}): check "
                    "ssl_ca_certs (the CA that signed the server's certificate) and that "
                    "the certificate names the host in the URL")
        if isinstance(cause, ssl.SSLError):
            return f"failed the TLS handshake ({cause.reason}): check the TLS settings"
        cause = cause.__cause__ or cause.__context__
    return None


def targets() -> Iterator[tuple[str, Any]]:
    """(what, client factory) for each Redis in the settings (URLs redacted in ``what``);
    ``manage.py flexiai_redis`` checks the same list."""
    for alias, conf in getattr(settings, "CACHES", {}).items():
        if str(conf.get("BACKEND", "")).startswith("django_redis."):
            yield f"cache {alias!r} at {_location(conf)}", lambda a=alias: _cache_client(a)
    store = getattr(settings, "FLEXIAI", {}).get("BREAKER_STORE", {})
    url = (store.get("OPTIONS") or {}).get("url") if isinstance(store, dict) else None
    if url:
        yield f"breaker store at {redacted(url)}", lambda u=url: _url_client(u, {})
    for alias, conf in getattr(settings, "CHANNEL_LAYERS", {}).items():
        if not str(conf.get("BACKEND", "")).startswith("channels_redis."):
            continue
        for host in (conf.get("CONFIG") or {}).get("hosts", []):
            address, options = (host, {}) if isinstance(host, str) else (
                host.get("address"), {k: v for k, v in host.items() if k != "address"})
            if isinstance(address, str):  # Sentinel hosts are checked through the cache
                yield (f"channel layer {alias!r} at {redacted(address)}",
                       lambda a=address, o=options: _url_client(a, o))


def _location(conf: dict[str, Any]) -> str:
    location = conf.get("LOCATION", "")
    first = location[0] if isinstance(location, list | tuple) else str(location)
    return redacted(first.split(",")[0])


def _cache_client(alias: str) -> redis.Redis:
    from flexiai_django.redis_clients import client_for_alias

    return client_for_alias(alias, TIMEOUT, TIMEOUT)


def _url_client(url: str, options: dict[str, Any]) -> redis.Redis:
    options = {**options, "socket_timeout": TIMEOUT, "socket_connect_timeout": TIMEOUT}
    return redis.Redis.from_url(url, **options)


def verify_redis_credentials() -> list[str]:
    """PING each configured Redis; return one message for each that refuses us.

    Unreachable servers are only logged (once each): the app starts and degrades.
    """
    refused: list[str] = []
    for what, factory in targets():
        try:
            client = factory()
            try:
                client.ping()
            finally:
                client.close()
        except (redis.RedisError, OSError) as exc:
            reason = problem(exc)
            if reason is None:
                logger.warning("Redis (%s) is unreachable at start (%s): starting degraded",
                               what, type(exc).__name__)
            else:
                refused.append(f"Redis ({what}) {reason}.")
    return refused


def refuse_to_start_on_bad_credentials() -> None:
    refused = verify_redis_credentials()
    if refused:
        for message in refused:
            logger.error("flexiai.E070: %s", message)
        raise ImproperlyConfigured("flexiai.E070: " + " ".join(refused))
