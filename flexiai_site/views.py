"""Demo endpoints: the same fallback chain called directly and through the decorator.

They take the API's credentials (a ``chat``-scoped key, or a logged-in user with a CSRF
token) and count against the same rate limits: a demo view is still an LLM call.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt, ensure_csrf_cookie
from django.views.decorators.http import require_POST

import flexiai_django
from flexiai_django.auth import cache_scope, principal_of, require_scope
from flexiai_django.responses import trace_headers, with_headers
from flexiai_django.worker import worker_id

SYSTEM = "You are a concise assistant. Answer in one paragraph."


def explain(scope: str) -> Any:
    """The decorator demo; the caller's cache scope keeps cached answers per caller."""

    @flexiai_django.llm(system=SYSTEM, cache_scope=scope)
    async def call(topic: str) -> str:
        return f"Explain {topic} to a Django developer."

    return call


def _payload(result: flexiai_django.ChatResult) -> dict[str, Any]:
    return {
        "content": result.content,
        "provider": result.provider,
        "model": result.model,
        "tier": result.tier,
        "attempts": result.attempts,
        "latency_ms": round(result.latency_ms, 1),
        "worker_id": worker_id(),
        "timestamp": datetime.now(UTC).isoformat(),
    }


def _error(message: str, status: int, **headers: str) -> JsonResponse:
    response = JsonResponse({"error": {"message": message}}, status=status)
    for name, value in headers.items():
        response[name] = value
    return response


async def _serve(request: HttpRequest, field: str, call: Any) -> JsonResponse:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return _error("Body must be JSON.", 400)
    text = body.get(field) if isinstance(body, dict) else None
    if not isinstance(text, str) or not text.strip():
        return _error(f"'{field}' must be a non-empty string.", 400)
    try:
        result = await call(text)
    except flexiai_django.NoProviderAvailable as exc:
        return _error(str(exc), 503, **{"Retry-After": str(int(exc.retry_after))})
    except flexiai_django.BadRequest as exc:
        return _error(exc.message, 400)
    return with_headers(JsonResponse(_payload(result)),
                        trace_headers(result.provider, result.tier, result.attempts))


# csrf_exempt: API keys need no CSRF token; require_scope checks it for session users.
@csrf_exempt
@require_POST
@require_scope("chat")
async def chat_direct(request: HttpRequest) -> JsonResponse:
    scope = cache_scope(principal_of(request))

    async def call(message: str) -> flexiai_django.ChatResult:
        return await flexiai_django.achat(message, cache_scope=scope)

    return await _serve(request, "message", call)


@csrf_exempt
@require_POST
@require_scope("chat")
async def chat_decorator(request: HttpRequest) -> JsonResponse:
    return await _serve(request, "topic", explain(cache_scope(principal_of(request))))


@ensure_csrf_cookie  # the page's script sends it back as X-CSRFToken
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "flexiai_site/index.html")
