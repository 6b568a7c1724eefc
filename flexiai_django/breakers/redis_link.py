"""The breaker store's line to Redis: when to use it, and the client to use it with.

One fail-fast client per store, built on first use (its own pool: short timeouts, no
retries), with the breaker script registered on it, and the outage state around it:
after a failure Redis is left alone for ``retry_seconds``, and an outage ends only when
a write probe passes (an out-of-memory or read-only server still answers reads).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import redis

from flexiai_django.redis_clients import fail_fast_client
from flexiai_django.redis_outage import RedisOutage
from flexiai_django.redis_reach import server_of

from .redis_codec import script_source


class RedisLink:
    def __init__(self, url: str | None, alias: str | None, socket_timeout: float,
                 connect_timeout: float, retry_seconds: float) -> None:
        self._url = url
        self._alias = alias
        self._timeouts = (socket_timeout, connect_timeout)
        self._client: redis.Redis | None = None
        self._script: Any = None
        self._lock = threading.Lock()
        self.outage = RedisOutage(
            "breaker store lost Redis (%s); using in-process breakers",
            "breaker store reconnected to Redis; re-reading shared state", retry_seconds)

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    client = fail_fast_client(self._url, self._alias, *self._timeouts)
                    self._script = client.register_script(script_source())
                    self.outage.attach(server_of(client))
                    self._client = client
        return self._client

    def run_script(self, keys: list[str], args: list[Any]) -> Any:
        """``breaker.lua``'s answer. A ``NoScriptError`` (Redis restarted, ``SCRIPT
        FLUSH``) never reaches the caller: redis-py loads the script again and retries."""
        self.client  # noqa: B018 -- builds the client and registers the script
        return self._script(keys=keys, args=args)

    def usable(self, write_probe: Callable[[], bool]) -> bool:
        """Whether to use Redis now: not inside the back-off, and after an outage only
        once ``write_probe`` passed."""
        if not self.outage.retry_due:
            return False
        return self.outage.connected or (self.outage.claim_probe() and write_probe())

    def close(self) -> None:
        """Drop the client's connections (tests that restart Redis under a store)."""
        if self._client is not None:
            self._client.close()
