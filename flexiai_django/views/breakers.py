"""Breaker state, shared and as this worker currently sees it."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase
from django.views.decorators.http import require_GET

from flexiai_django.auth import require_scope
from flexiai_django.breakers import get_store
from flexiai_django.views.health import sync_status
from flexiai_django.worker import worker_id


@require_GET
@require_scope("chat")
async def circuit_breakers(request: HttpRequest) -> HttpResponseBase:
    store = get_store()
    local_views = store.snapshots()  # before the shared read below refreshes them
    states = await sync_to_async(store.all, thread_sensitive=False)()
    breakers = {}
    for name, state in sorted(states.items()):
        local = local_views.get(name)
        breakers[name] = {
            **state.to_dict(),
            "local": None if local is None else {"state": local.state.value,
                                                 "version": local.version},
        }
    return JsonResponse({"worker_id": worker_id(), **sync_status(), "breakers": breakers})
