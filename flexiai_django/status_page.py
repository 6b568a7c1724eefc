"""What the live status page shows: one snapshot on connect, then events as they come.

The snapshot is read from the shared store (the truth for every worker), the provider
table and the transition history; it carries ``server_time`` so the browser can count
down to half-open with its own clock, and ``active_probe_seconds`` (each breaker state
carries its last active probe and the probes of the current outage). A provider that
can't be used as configured (a key that can't be decrypted…) carries
``misconfigured: "<reason>"`` so it is never invisible. ``capacity`` holds the capacity
planner's last decision per tier; later ones arrive as ``capacity`` events.
"""

from __future__ import annotations

import time
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async

from flexiai_django import broadcast, inflight, recent_calls
from flexiai_django.breakers import get_store
from flexiai_django.breakers.state import BreakerState, State
from flexiai_django.capacity.outputs import last_decisions
from flexiai_django.conf import get_settings
from flexiai_django.providers.base import breaker_name_for
from flexiai_django.worker import worker_id

TIMELINE_LENGTH = 50

#: What the page's buttons may ask for, and the state each one forces.
ACTIONS: dict[str, State] = {
    "reset": State.CLOSED,
    "force_open": State.FORCED_OPEN,
    "disable": State.DISABLED,
}


def transition_dict(row: Any) -> dict[str, Any]:
    return {
        "breaker": row.breaker,
        "provider": row.provider,
        "from": row.from_state,
        "to": row.to_state,
        "at": row.at.timestamp(),
        "worker": row.worker,
        "failures": row.failures,
        "error": row.error,
    }


def provider_row(provider: Any) -> dict[str, Any]:
    """What the page shows of one provider; ``misconfigured`` is why it can't be used."""
    return {
        "name": provider.name,
        "kind": provider.kind,
        "model": provider.model,
        "priority": provider.priority,
        "enabled": provider.enabled,
        "warming": provider.warming,
        "misconfigured": provider.misconfiguration(),
        "tier": provider.tier,
        "capacity": provider.capacity,
    }


def _read_tables() -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    from flexiai_django.models import BreakerTransition, Provider

    rows = list(Provider.objects.order_by("priority", "name"))
    providers = [provider_row(row) for row in rows]
    recent = [transition_dict(row) for row in BreakerTransition.objects.all()[:TIMELINE_LENGTH]]
    return providers, recent, inflight_message([r for r in rows if r.enabled])


def inflight_message(providers: list[Any]) -> dict[str, Any]:
    """Deployment-wide in-flight counts per provider and per tier (with capacity); the
    page asks again every ``STATS_PUBLISH_SECONDS`` (:mod:`flexiai_django.inflight`)."""
    return {"type": "inflight", **inflight.report(providers)}


def _enabled_rows() -> list[Any]:
    from flexiai_django.models import Provider

    return list(Provider.objects.filter(enabled=True))


async def ainflight_message() -> dict[str, Any]:
    rows = await database_sync_to_async(_enabled_rows)()
    return await sync_to_async(inflight_message, thread_sensitive=False)(rows)


def worker_stats() -> dict[str, dict[str, Any]]:
    """The latest figures of every worker this process has heard from (itself included)."""
    settings = get_settings()
    shared = broadcast.listener()
    known = dict(shared.worker_stats) if shared is not None else {}
    known[worker_id()] = broadcast.stats_message(
        recent_calls.local().summary(settings.STATS_WINDOW_SECONDS))
    horizon = time.time() - settings.STATS_WINDOW_SECONDS - 2 * settings.STATS_PUBLISH_SECONDS
    return {w: m for w, m in known.items() if m["sent_at"] >= horizon}


async def snapshot() -> dict[str, Any]:
    providers, recent, in_flight = await database_sync_to_async(_read_tables)()
    states: dict[str, BreakerState] = await sync_to_async(
        get_store().all, thread_sensitive=False)()
    reporters = {t["breaker"]: t["worker"] for t in reversed(recent)}
    for row in providers:
        name = breaker_name_for(row["name"])
        row["breaker"] = name
        row["state"] = states.get(name, BreakerState()).to_dict()
        row["worker"] = reporters.get(name)
        row["in_flight"] = in_flight["in_flight"].get(row["name"], 0)
    settings = get_settings()
    return {
        "type": "snapshot",
        "server_time": time.time(),
        "worker": worker_id(),
        "window": settings.STATS_WINDOW_SECONDS,
        "stale_after": settings.STATS_WINDOW_SECONDS + 2 * settings.STATS_PUBLISH_SECONDS,
        "active_probe_seconds": settings.ACTIVE_PROBE_SECONDS,
        "providers": providers,
        "transitions": recent,
        "stats": worker_stats(),
        "store": get_store().describe(),
        "tiers": in_flight["tiers"],
        "capacity": [d.to_dict() for d in (await sync_to_async(
            last_decisions, thread_sensitive=False)()).values()],
    }
