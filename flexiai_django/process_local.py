"""One object per process, built on first use and again after a fork.

gunicorn forks workers after the app may have been imported: a Redis client, a thread
pool or a listener thread made in the master must never be used by a child. Each
process-wide object is held by a :class:`PerProcess`, which remembers the pid that built
it and builds a fresh one in any other process, like channels' ``ChannelLayerManager``
builds layers lazily from settings and resets them when settings change.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerProcess(Generic[T]):
    """``get()`` builds with ``build`` once per process; ``reset()`` drops the value.

    ``on_built`` runs after a new value is stored, outside the lock, so it may call
    ``get()`` itself (the breaker store announces itself and the listener reads it).
    """

    def __init__(self, build: Callable[[], T],
                 on_built: Callable[[T], None] | None = None) -> None:
        self._build = build
        self._on_built = on_built
        self._held: tuple[int, T] | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        held = self._held
        pid = os.getpid()
        if held is not None and held[0] == pid:
            return held[1]
        with self._lock:
            held = self._held
            if held is not None and held[0] == pid:
                return held[1]
            value = self._build()
            self._held = (pid, value)
        if self._on_built is not None:
            self._on_built(value)
        return value

    def peek(self) -> T | None:
        """This process's value if it was built, without building it."""
        held = self._held
        return held[1] if held is not None and held[0] == os.getpid() else None

    def reset(self) -> None:
        with self._lock:
            self._held = None

    def pop(self) -> T | None:
        """Drop the value, returning it if this process built it (to be stopped: a value
        inherited across a fork belongs to the parent)."""
        with self._lock:
            held, self._held = self._held, None
        return held[1] if held is not None and held[0] == os.getpid() else None
