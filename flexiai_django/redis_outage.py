"""When a shared Redis stops answering: stay in-process for a while, then try again.

The breaker store and the rate limiter both fall back to in-process state when Redis
fails, retry after ``retry_seconds`` and log once per outage (the error's type, never
its text, which may carry a URL or a key).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

logger = logging.getLogger("flexiai_django")


class RedisOutage:
    def __init__(self, lost: str, back: str, retry_seconds: float, *,
                 clock: Callable[[], float] = time.monotonic, connected: bool = True) -> None:
        """``lost`` is logged with ``%s`` for the error type, ``back`` on reconnecting."""
        self._lost = lost
        self._back = back
        self._retry_seconds = retry_seconds
        self._clock = clock
        self._down_until = 0.0
        self.connected = connected

    @property
    def retry_due(self) -> bool:
        """Whether Redis may be tried now (always, unless it failed in the last while)."""
        return self._clock() >= self._down_until

    def failed(self, exc: BaseException) -> None:
        if self.connected:
            logger.warning(self._lost, type(exc).__name__)
        self.connected = False
        self._down_until = self._clock() + self._retry_seconds

    def succeeded(self) -> bool:
        """Redis answered; True when that ends an outage (the caller drops its local state)."""
        self._down_until = 0.0
        if self.connected:
            return False
        logger.warning(self._back)
        self.connected = True
        return True
