"""Provider listing and breaker reset. Reads are for any API caller; reset is management:
an ``admin``-scoped key, or a staff user who may change providers (CSRF-checked)."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from flexiai_django import inflight
from flexiai_django.auth import require_scope
from flexiai_django.breakers import get_store
from flexiai_django.breakers.state import State
from flexiai_django.models import Provider
from flexiai_django.provider_cache import aget_providers
from flexiai_django.responses import error_response
from flexiai_django.views.health import provider_report
from flexiai_django.worker import worker_id


@require_GET
@require_scope("chat")
async def providers(request: HttpRequest) -> HttpResponseBase:
    report = await with_in_flight(await provider_report())
    return JsonResponse({"worker_id": worker_id(), **report})


async def with_in_flight(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``rows`` (:func:`provider_report`'s) with each provider's tier, capacity and
    deployment-wide ``in_flight``, and ``tiers``: the same per tier (one Redis round trip)."""
    configs = await aget_providers()
    found = await sync_to_async(inflight.report, thread_sensitive=False)(configs)
    by_name = {p.name: p for p in configs}
    for row in rows:
        config = by_name.get(row["name"])
        row["tier"] = config.tier if config else ""
        row["capacity"] = config.capacity if config else None
        row["in_flight"] = found["in_flight"].get(row["name"], 0)
    return {"providers": rows, "tiers": found["tiers"]}


@csrf_exempt
@require_scope("admin")
async def reset(request: HttpRequest, name: str) -> HttpResponseBase:
    if request.method != "POST":
        return error_response(405, "Use POST.", code="method_not_allowed",
                              headers={"Allow": "POST"})
    provider = await Provider.objects.filter(name=name).afirst()
    if provider is None:
        return error_response(404, f"No provider named '{name}'.", code="provider_not_found",
                              param="name")
    state = await sync_to_async(get_store().force, thread_sensitive=False)(
        provider.breaker_name, State.CLOSED)
    return JsonResponse({"provider": name, "circuit_state": state.state.value,
                         "version": state.version, "worker_id": worker_id()})
