"""Enabled providers as immutable snapshots, cached briefly in each process.

The cache is dropped at once in the process that saved a provider, and is at most
``PROVIDER_REFRESH_SECONDS`` old elsewhere, so admin edits reach every worker
without a restart and the hot path does not hit the database.

An enabled provider that can't be used as configured (its key can't be decrypted, its
``api_key_env`` is refused…) is never called, but it is not dropped silently either:
it is listed with its reason by :func:`get_misconfigured`, for /health and the admin.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from flexiai_django import signals
from flexiai_django.conf import get_settings
from flexiai_django.errors import ConfigurationError
from flexiai_django.providers.base import ProviderConfig

logger = logging.getLogger("flexiai_django")



@dataclass(frozen=True)
class Misconfigured:
    """An enabled provider that is left out of the chain, and why (never key material)."""

    name: str
    kind: str
    model: str
    priority: int
    reason: str


@dataclass(frozen=True)
class Snapshot:
    """One read of the table: the usable providers in order, and the ones left out."""

    providers: tuple[ProviderConfig, ...] = ()
    misconfigured: tuple[Misconfigured, ...] = ()


_lock = threading.Lock()
_load_lock = threading.Lock()
_cached: tuple[float, Snapshot] | None = None
#: Bumped by :func:`invalidate`: a read that started before a change is not cached.
_generation = 0
#: The table read in progress per event loop, shared by its concurrent requests (None
#: when it failed).
_reads: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop,
                                  asyncio.Future[Snapshot | None]] = weakref.WeakKeyDictionary()
#: What this process last logged per misconfigured provider (logged again on change only).
_reported: dict[str, str] = {}


def _load() -> Snapshot:
    from flexiai_django.models import Provider

    configs = []
    left_out = []
    for row in Provider.objects.filter(enabled=True).order_by("priority", "name"):
        try:
            configs.append(row.to_config())
        except ConfigurationError as exc:
            left_out.append(Misconfigured(row.name, row.kind, row.model, row.priority, str(exc)))
    _report(left_out)
    return Snapshot(tuple(configs), tuple(left_out))


def _report(left_out: list[Misconfigured]) -> None:
    now = {m.name: m.reason for m in left_out}
    with _lock:
        new = {name: reason for name, reason in now.items() if _reported.get(name) != reason}
        _reported.clear()
        _reported.update(now)
    for name, reason in new.items():
        logger.error("provider %s is misconfigured and left out: %s", name, reason)


def _fresh() -> Snapshot | None:
    cached = _cached
    if cached and time.monotonic() - cached[0] < get_settings().PROVIDER_REFRESH_SECONDS:
        return cached[1]
    return None


def _keep(snapshot: Snapshot, generation: int) -> Snapshot:
    """Cache ``snapshot`` unless the table changed (:func:`invalidate`) since it was read."""
    global _cached
    with _lock:
        if generation == _generation:
            _cached = (time.monotonic(), snapshot)
    return snapshot


def get_snapshot() -> Snapshot:
    """The usable and the misconfigured enabled providers, from one read.

    When the cache is due, one thread reads the table and the others wait for its read
    rather than each opening a database connection of its own.
    """
    fresh = _fresh()
    if fresh is not None:
        return fresh
    with _load_lock:
        fresh = _fresh()
        if fresh is not None:
            return fresh
        generation = _generation  # before the read: a change during it must win
        return _keep(_load(), generation)


async def aget_snapshot() -> Snapshot:
    """:func:`get_snapshot` for async code: the concurrent requests of an event loop that
    find the cache due share one read (a burst of 32 requests used to make 32 reads, each
    in its own thread with a new database connection, once a second)."""
    while True:
        fresh = _fresh()
        if fresh is not None:
            return fresh
        loop = asyncio.get_running_loop()
        shared = _reads.get(loop)
        if shared is None:
            return await _aread(loop)
        read = await asyncio.shield(shared)
        if read is not None:
            return read
        # The request making the read failed or was cancelled: read again (ourselves).


async def _aread(loop: asyncio.AbstractEventLoop) -> Snapshot:
    """Read in this request's own thread (as any of its database calls), and hand the
    result to the requests waiting for it; on failure they read for themselves."""
    shared: asyncio.Future[Snapshot | None] = loop.create_future()
    _reads[loop] = shared
    generation = _generation
    snapshot = None
    try:
        snapshot = _keep(await database_sync_to_async(_load)(), generation)
        return snapshot
    finally:
        del _reads[loop]
        shared.set_result(snapshot)


def get_providers() -> tuple[ProviderConfig, ...]:
    """The enabled, usable providers in order: what the fallback chain walks."""
    return get_snapshot().providers


async def aget_providers() -> tuple[ProviderConfig, ...]:
    return (await aget_snapshot()).providers


def get_misconfigured() -> tuple[Misconfigured, ...]:
    """Enabled providers left out of the chain because of their configuration."""
    return get_snapshot().misconfigured


async def aget_misconfigured() -> tuple[Misconfigured, ...]:
    return (await aget_snapshot()).misconfigured


def invalidate(**kwargs: Any) -> None:
    """Read the table again on next use (and log its misconfigured providers again)."""
    global _cached, _generation
    with _lock:
        _cached = None
        _generation += 1
        _reported.clear()


def _on_provider_change(sender: Any, **kwargs: Any) -> None:
    invalidate()
    signals.providers_changed.send(sender=sender)


def connect() -> None:
    from flexiai_django.models import Provider

    post_save.connect(_on_provider_change, sender=Provider, dispatch_uid="flexiai-provider-save")
    post_delete.connect(_on_provider_change, sender=Provider,
                        dispatch_uid="flexiai-provider-delete")


receiver(signals.settings_reloaded)(invalidate)
