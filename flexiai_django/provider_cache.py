"""Enabled providers as immutable snapshots, cached briefly in each process.

The cache is dropped at once in the process that saved a provider, and is at most
``PROVIDER_REFRESH_SECONDS`` old elsewhere, so admin edits reach every worker
without a restart and the hot path does not hit the database.

An enabled provider that can't be used as configured (its key can't be decrypted, its
``api_key_env`` is refused…) is never called, but it is not dropped silently either:
it is listed with its reason by :func:`get_misconfigured`, for /health and the admin.
"""

from __future__ import annotations

import logging
import threading
import time
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
_cached: tuple[float, Snapshot] | None = None
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


def _keep(snapshot: Snapshot) -> Snapshot:
    global _cached
    with _lock:
        _cached = (time.monotonic(), snapshot)
    return snapshot


def get_snapshot() -> Snapshot:
    """The usable and the misconfigured enabled providers, from one read."""
    fresh = _fresh()
    return _keep(_load()) if fresh is None else fresh


async def aget_snapshot() -> Snapshot:
    fresh = _fresh()
    return _keep(await database_sync_to_async(_load)()) if fresh is None else fresh


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
    global _cached
    with _lock:
        _cached = None
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
