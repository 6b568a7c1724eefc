"""One Lua script on a fail-fast Redis client, and the gate every shared counter needs.

The rate limiter and the hedge budget both keep a count in Redis with one script, fall
back to counting in the process while Redis is out (:class:`RedisOutage`), and after an
outage go back to Redis only once a write went through: an out-of-memory or read-only
server still answers reads but refuses the script's writes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import redis

from flexiai_django.redis_clients import fail_fast_client
from flexiai_django.redis_outage import REDIS_ERRORS, RedisOutage, probe_writes
from flexiai_django.redis_reach import server_of


class SharedScript:
    """``script(keys=…, args=…)`` runs it; the client is built on first use (settings are
    read then, never at import). ``shared=False``: never ask Redis at all."""

    def __init__(self, source: str, outage: RedisOutage, *, alias: str | None,
                 url: str | None, timeouts: tuple[float, float], shared: bool,
                 probe_key: str) -> None:
        self._source = source
        self.outage = outage
        self._alias, self._url, self._timeouts = alias, url, timeouts
        self.shared = shared
        self._probe_key = probe_key
        self._lock = threading.Lock()
        self._client: redis.Redis | None = None
        self._script: Any = None

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    client = fail_fast_client(self._url, self._alias, *self._timeouts)
                    self.outage.attach(server_of(client))
                    self._script = client.register_script(self._source)
                    self._client = client
        return self._client

    def __call__(self, *, keys: list[str], args: list[Any]) -> Any:
        self.client  # noqa: B018 (built on first use)
        return self._script(keys=keys, args=args)

    def may_use(self) -> bool:
        """No I/O: whether :meth:`usable` would try Redis now."""
        return self.shared and self.outage.retry_due

    def usable(self, on_lost: Callable[[BaseException], None] | None = None,
               on_back: Callable[[], None] | None = None) -> bool:
        """Whether to ask Redis now. During an outage one thread at a time probes with a
        write; ``on_lost`` (default: the outage's own ``failed``) hears of a failed probe,
        ``on_back`` of the outage's end."""
        if not self.may_use():
            return False
        if self.outage.connected:
            return True
        if not self.outage.claim_probe():  # another thread is probing: not here
            return False
        try:
            probe_writes(self.client, self._probe_key)
        except REDIS_ERRORS as exc:
            (on_lost or self.outage.failed)(exc)
            return False
        if self.outage.succeeded() and on_back is not None:
            on_back()
        return True
