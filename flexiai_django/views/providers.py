"""Provider listing and breaker reset. Reads are for any API caller; reset is management:
an ``admin``-scoped key, or a staff user who may change providers (CSRF-checked)."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from flexiai_django.auth import require_scope
from flexiai_django.breakers import get_store
from flexiai_django.breakers.state import State
from flexiai_django.models import Provider
from flexiai_django.responses import error_response
from flexiai_django.views.health import provider_report
from flexiai_django.worker import worker_id


@require_GET
@require_scope("chat")
async def providers(request: HttpRequest) -> HttpResponseBase:
    return JsonResponse({"worker_id": worker_id(), "providers": await provider_report()})


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
