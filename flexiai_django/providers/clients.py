"""One long-lived httpx client per process, event loop and provider: pooled keep-alive.

Clients are never shared across a fork (keyed by pid) nor across event loops (an
``AsyncClient``'s connections belong to the loop that opened them).
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, Protocol

import httpx
from django.dispatch import receiver
from django.utils.module_loading import import_string

from flexiai_django import signals
from flexiai_django.conf import get_settings

_lock = threading.Lock()
_sync: dict[tuple[int, str], httpx.Client] = {}
_async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, httpx.AsyncClient]] = (
    weakref.WeakKeyDictionary()
)
#: The async clients whose transport can post a whole body itself (see :func:`direct_post`).
_direct: weakref.WeakKeyDictionary[httpx.AsyncClient, DirectPost] = weakref.WeakKeyDictionary()
_LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=50, keepalive_expiry=30)


class DirectPost(Protocol):
    """A transport that sends one whole POST without httpx's models around it
    (:meth:`flexiai_django.providers.transports.AiohttpTransport.apost`)."""

    async def apost(self, url: str, headers: Mapping[str, str], content: bytes,
                    on_reply: Callable[[], None]) -> tuple[int, Mapping[str, str], bytes]: ...


def direct_post(client: httpx.AsyncClient) -> DirectPost | None:
    """The pooled client's transport when it can post directly, for the non-streaming
    hot path; None for httpx's own transport and for clients built elsewhere."""
    return _direct.get(client)


def _no_cookies() -> CookieJar:
    """A jar that keeps nothing: one caller's upstream cookie must never ride along with
    the next caller's request on the shared client."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def _transport(setting: str) -> Any:
    factory = getattr(get_settings(), setting)
    return import_string(factory)() if factory else None


def sync_client(key: str) -> httpx.Client:
    pid_key = (os.getpid(), key)
    client = _sync.get(pid_key)
    if client is None:
        with _lock:
            client = _sync.get(pid_key)
            if client is None:
                client = httpx.Client(limits=_LIMITS, transport=_transport("SYNC_TRANSPORT"),
                                      cookies=_no_cookies())
                _sync[pid_key] = client
    return client


_lifetimes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
    weakref.WeakKeyDictionary()
)


async def _close_with_loop(clients: dict[str, httpx.AsyncClient]) -> AsyncIterator[None]:
    """Lives as long as its loop: ``shutdown_asyncgens()`` (asyncio.run, asgiref, pytest)
    finalises it while the loop can still run ``aclose()``."""
    try:
        yield
    finally:
        for client in list(clients.values()):
            await client.aclose()
        clients.clear()


def async_client(key: str) -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    per_loop = _async.get(loop)
    if per_loop is None:
        per_loop = _async.setdefault(loop, {})
        lifetime = _close_with_loop(per_loop)
        _lifetimes[loop] = (lifetime, loop.create_task(anext(lifetime)))  # type: ignore[arg-type]
    client = per_loop.get(key)
    if client is None:
        transport = _transport("ASYNC_TRANSPORT")
        client = httpx.AsyncClient(limits=_LIMITS, transport=transport, cookies=_no_cookies())
        per_loop[key] = client
        if hasattr(transport, "apost") and getattr(transport, "proxy", None) is None:
            _direct[client] = transport
    return client


@receiver(signals.settings_reloaded)
def close_all(**kwargs: Any) -> None:
    """Drop every pooled client (transport settings may have changed)."""
    with _lock:
        clients = [c for (pid, _), c in _sync.items() if pid == os.getpid()]
        _sync.clear()
        _async.clear()
    for client in clients:
        client.close()
