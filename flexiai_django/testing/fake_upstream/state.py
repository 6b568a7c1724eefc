"""What the fake upstream remembers: per-scope faults, counters, reply prefixes, recordings.

Every handler thread and the Python API (``FakeUpstream``) read and change it, so it lives
behind one lock here, apart from the HTTP code that fills it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import socket
import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

from flexiai_django.testing.fake_upstream.faults import ArmedFault, Fault, shown
from flexiai_django.testing.fake_upstream.formats import Api

DEFAULT_REPLY_PREFIX = "echo: "

_MAX_RECORDED = 1000


def norm_scope(scope: str) -> str:
    """``"/primary/"``, ``"primary"`` and the path prefix ``"/primary"`` name one scope."""
    return scope.strip("/")


class Headers(dict[str, str]):
    """Lower-cased header dict with case-insensitive lookups, so tests needn't guess casing."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__()
        for key, value in items:
            lower = key.lower()
            self[lower] = f"{self[lower]}, {value}" if lower in self else value

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


@dataclasses.dataclass(frozen=True)
class RecordedRequest:
    """What a scope's endpoint received, so tests can check keys, bodies and routing."""

    path: str
    headers: dict[str, str]
    json: Any
    method: str = "POST"
    scope: str = ""
    api: Api = "openai"
    query: str = ""
    body: bytes = b""


@dataclasses.dataclass
class _Scope:
    hits: int = 0
    armed: ArmedFault = dataclasses.field(default_factory=ArmedFault)
    reply_prefix: str = DEFAULT_REPLY_PREFIX
    recorded: deque[RecordedRequest] = dataclasses.field(
        default_factory=lambda: deque(maxlen=_MAX_RECORDED)
    )


class State:
    """Everything the handler threads share, behind one lock."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._scopes: dict[str, _Scope] = {}
        self._ids = itertools.count(1)
        self._connections = 0
        self._hangups = 0
        self._open: set[socket.socket] = set()

    def _scope(self, name: str) -> _Scope:
        scope = self._scopes.get(name)
        if scope is None:
            scope = self._scopes[name] = _Scope()
        return scope

    def arrive(self, name: str, record: RecordedRequest) -> tuple[Fault | None, str, int]:
        """Count and record a request, consuming one use of a ``times``-limited fault."""
        with self._lock:
            scope = self._scope(name)
            scope.hits += 1
            scope.recorded.append(record)
            return scope.armed.take(), scope.reply_prefix, next(self._ids)

    def set_fault(self, name: str, fault: Fault | None) -> None:
        with self._lock:
            self._scope(name).armed.arm(fault)

    def clear_faults(self) -> None:
        with self._lock:
            for scope in self._scopes.values():
                scope.armed.clear()

    def set_reply_prefix(self, name: str, prefix: str) -> None:
        with self._lock:
            self._scope(name).reply_prefix = prefix

    def hits(self, name: str) -> int:
        with self._lock:
            scope = self._scopes.get(name)
            return scope.hits if scope is not None else 0

    def requests(self, name: str) -> list[RecordedRequest]:
        with self._lock:
            scope = self._scopes.get(name)
            return list(scope.recorded) if scope is not None else []

    def reset(self) -> None:
        with self._lock:
            self._scopes.clear()
            self._connections = 0
            self._hangups = 0

    def stats(self) -> dict[str, Any]:
        with self._lock:
            scopes = {
                name: {
                    "hits": scope.hits,
                    "fault": shown(scope.armed.fault),
                    "remaining": scope.armed.remaining,
                    "reply_prefix": scope.reply_prefix,
                }
                for name, scope in sorted(self._scopes.items())
            }
            return {"scopes": scopes, "connections": self._connections,
                    "hangups": self._hangups}

    @property
    def connections(self) -> int:
        with self._lock:
            return self._connections

    @property
    def hangups(self) -> int:
        with self._lock:
            return self._hangups

    def hung_up(self) -> None:
        """A client closed its connection while a reply was paused (delay, slow first
        token, stall): it gave up waiting."""
        with self._lock:
            self._hangups += 1

    def opened(self, sock: socket.socket) -> None:
        with self._lock:
            self._connections += 1
            self._open.add(sock)

    def closed(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)

    def drop_connections(self) -> None:
        """Wake handler threads parked on idle keep-alive connections so stop() is prompt."""
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
