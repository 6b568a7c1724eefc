"""Probes: liveness (this process answers), readiness (a provider can serve), health (detail).

Readiness is also 503 from the moment the server starts to drain (SIGTERM, see
:mod:`flexiai_django.drain`) while it still serves, so traffic moves elsewhere before the
socket closes. ``/health/ready?providers=0`` leaves the providers out: 503 only while
draining, for probes that must not pull every instance at once in a provider outage
(every instance shares the same breakers).

Anyone may ask how the service is (a load balancer has no credentials), but which
providers, models and kinds stand behind it is shown only to staff sessions and
``admin``-scoped API keys: the rest is a map for an attacker.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from flexiai_django import broadcast, drain
from flexiai_django.auth import Principal, authenticate
from flexiai_django.breakers import get_store
from flexiai_django.breakers.state import BreakerState, available
from flexiai_django.provider_cache import aget_snapshot
from flexiai_django.shared_state import shared_state_status
from flexiai_django.worker import worker_id


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts else None


async def provider_report() -> list[dict[str, Any]]:
    """Each enabled provider with its breaker as the shared store sees it.

    Misconfigured providers are listed too, unavailable, with their reason.
    """
    snapshot = await aget_snapshot()
    providers = snapshot.providers
    store = get_store()
    states: dict[str, BreakerState] = await sync_to_async(store.all, thread_sensitive=False)()
    now = time.time()
    report = []
    for p in providers:
        state = states.get(p.breaker_name, BreakerState())
        report.append({
            "name": p.name,
            "kind": p.kind,
            "model": p.model,
            "priority": p.priority,
            "available": available(state, p.breaker, now),
            "circuit_state": state.state.value,
            "failure_count": state.failures,
            "last_failure_time": _iso(state.last_failure_at),
            "retry_at": _iso(state.retry_at),
            "cooldown_until": _iso(state.cooldown_until),
            "context_window": p.context_window,
            "misconfigured": None,
        })
    for m in snapshot.misconfigured:
        report.append({
            "name": m.name,
            "kind": m.kind,
            "model": m.model,
            "priority": m.priority,
            "available": False,
            "circuit_state": None,
            "failure_count": None,
            "last_failure_time": None,
            "retry_at": None,
            "cooldown_until": None,
            "context_window": None,
            "misconfigured": m.reason,
        })
    report.sort(key=lambda p: (p["priority"], p["name"]))
    return report


async def may_see_detail(request: HttpRequest) -> bool:
    """Staff sessions and ``admin``-scoped keys; never anonymous or chat-only callers."""
    principal = await authenticate(request)
    return isinstance(principal, Principal) and "admin" in principal.scopes


def sync_status() -> dict[str, Any]:
    """Shared-state health: Redis behind the store, the limiter and the answer cache.

    ``sync_enabled`` is true only while breaker state is really shared: the store counts
    in Redis (not while it stays off an unreachable or refusing server) and this
    process's listener is in the broadcast group (not in a publish-only process).
    """
    described = get_store().describe()
    listener = broadcast.listener()
    parts = shared_state_status()
    return {
        "redis_connected": bool(described["shared"] and parts["breaker_store"]
                                and parts["rate_limiter"]),
        "answer_cache_ok": parts["answer_cache"],
        "sync_enabled": bool(described["shared"] and parts["breaker_store"]
                             and listener and listener.in_group),
        "store": described["backend"],
    }


@require_GET
async def health(request: HttpRequest) -> JsonResponse:
    providers = await provider_report()
    sync = sync_status()
    up = [p for p in providers if p["available"]]
    if not up:
        status = "unhealthy"
    elif (len(up) < len(providers) or not sync["answer_cache_ok"]
          or (get_store().describe()["shared"] and not sync["redis_connected"])):
        status = "degraded"
    else:
        status = "healthy"
    body: dict[str, Any] = {"status": status, "worker_id": worker_id(), **sync}
    if await may_see_detail(request):
        body["providers"] = providers
    return JsonResponse(body, status=503 if status == "unhealthy" else 200)


@require_GET
async def live(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "alive", "worker_id": worker_id()})


@require_GET
async def ready(request: HttpRequest) -> JsonResponse:
    if drain.draining():
        return JsonResponse({"ready": False, "draining": True, "worker_id": worker_id()},
                            status=503)
    if request.GET.get("providers") == "0":
        return JsonResponse({"ready": True, "worker_id": worker_id()})
    providers = await provider_report()
    up = [p["name"] for p in providers if p["available"]]
    body: dict[str, Any] = {"ready": bool(up), "worker_id": worker_id()}
    if await may_see_detail(request):
        body["available_providers"] = up
    return JsonResponse(body, status=200 if up else 503)
