"""The model catalog: ``GET /v1/models`` (and ``/v1/models/<id>``) in OpenAI's shape.

The list holds what a caller may send as ``model``: the ``MODEL_ALIASES`` names that
route somewhere, each enabled provider's name, and the model ids those providers serve.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from flexiai_django.auth import require_scope
from flexiai_django.conf import get_settings
from flexiai_django.provider_cache import aget_providers
from flexiai_django.providers.base import ProviderConfig
from flexiai_django.responses import error_response


def _model(model_id: str, owned_by: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": owned_by}


def model_list(providers: tuple[ProviderConfig, ...],
               aliases: dict[str, list[str] | None]) -> list[dict[str, Any]]:
    """Aliases that reach an enabled provider, then providers, then their model ids."""
    names = {p.name for p in providers}
    entries: dict[str, dict[str, Any]] = {}
    for alias, group in aliases.items():
        if names if group is None else names.intersection(group):
            entries[alias] = _model(alias, "flexiai")
    for p in providers:
        entries.setdefault(p.name, _model(p.name, p.kind))
    for p in providers:
        if p.model:
            entries.setdefault(p.model, _model(p.model, p.kind))
    return list(entries.values())


def _method_not_allowed(request: HttpRequest) -> HttpResponseBase:
    return error_response(405, f"{request.method} is not allowed here; use GET.",
                          code="method_not_allowed", headers={"Allow": "GET"})


@csrf_exempt
@require_scope("chat")
async def models(request: HttpRequest) -> HttpResponseBase:
    if request.method != "GET":
        return _method_not_allowed(request)
    data = model_list(await aget_providers(), get_settings().MODEL_ALIASES)
    return JsonResponse({"object": "list", "data": data})


@csrf_exempt
@require_scope("chat")
async def model(request: HttpRequest, model_id: str) -> HttpResponseBase:
    if request.method != "GET":
        return _method_not_allowed(request)
    for entry in model_list(await aget_providers(), get_settings().MODEL_ALIASES):
        if entry["id"] == model_id:
            return JsonResponse(entry)
    return error_response(404, f"The model '{model_id}' does not exist or is not enabled.",
                          code="model_not_found", param="model")
