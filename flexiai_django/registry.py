"""Enabled providers as immutable snapshots, cached briefly in each process.

The cache is dropped at once in the process that saved a provider, and is at most
``PROVIDER_REFRESH_SECONDS`` old elsewhere, so admin edits reach every worker
without a restart and the hot path does not hit the database.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from channels.db import database_sync_to_async
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from flexiai_django import signals
from flexiai_django.conf import get_settings
from flexiai_django.errors import ConfigurationError
from flexiai_django.providers.base import ProviderConfig

logger = logging.getLogger("flexiai_django")

_lock = threading.Lock()
_cached: tuple[float, tuple[ProviderConfig, ...]] | None = None


def _load() -> tuple[ProviderConfig, ...]:
    from flexiai_django.models import Provider

    configs = []
    for row in Provider.objects.filter(enabled=True).order_by("priority", "name"):
        try:
            configs.append(row.to_config())
        except ConfigurationError as exc:
            logger.error("provider %s skipped: %s", row.name, exc)
    return tuple(configs)


def _fresh() -> tuple[ProviderConfig, ...] | None:
    cached = _cached
    if cached and time.monotonic() - cached[0] < get_settings().PROVIDER_REFRESH_SECONDS:
        return cached[1]
    return None


def _store(configs: tuple[ProviderConfig, ...]) -> tuple[ProviderConfig, ...]:
    global _cached
    with _lock:
        _cached = (time.monotonic(), configs)
    return configs


def get_providers() -> tuple[ProviderConfig, ...]:
    fresh = _fresh()
    return _store(_load()) if fresh is None else fresh


async def aget_providers() -> tuple[ProviderConfig, ...]:
    fresh = _fresh()
    return _store(await database_sync_to_async(_load)()) if fresh is None else fresh


def invalidate(**kwargs: Any) -> None:
    global _cached
    with _lock:
        _cached = None


def _on_provider_change(sender: Any, **kwargs: Any) -> None:
    invalidate()
    signals.providers_changed.send(sender=sender)


def connect() -> None:
    from flexiai_django.models import Provider

    post_save.connect(_on_provider_change, sender=Provider, dispatch_uid="flexiai-provider-save")
    post_delete.connect(_on_provider_change, sender=Provider,
                        dispatch_uid="flexiai-provider-delete")


receiver(signals.settings_reloaded)(invalidate)
