"""Demo endpoints: the same fallback chain called directly and through the decorator."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

import flexiai_django
from flexiai_django.worker import worker_id


@flexiai_django.llm(system="You are a concise assistant. Answer in one paragraph.")
async def explain(topic: str) -> str:
    return f"Explain {topic} to a Django developer."


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
    return JsonResponse(_payload(result))


@csrf_exempt
@require_POST
async def chat_direct(request: HttpRequest) -> JsonResponse:
    return await _serve(request, "message", flexiai_django.achat)


@csrf_exempt
@require_POST
async def chat_decorator(request: HttpRequest) -> JsonResponse:
    return await _serve(request, "topic", explain)


def index(request: HttpRequest) -> HttpResponse:
    return render(request, "flexiai_site/index.html")
