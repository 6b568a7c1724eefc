"""Demo endpoints: the same fallback chain called directly and through the decorator, and
the seed's session calls (``/initiate_call``, ``/chat_completions``) as thin wrappers over
``/v1/sessions``' own helpers.

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
from flexiai_django import chain
from flexiai_django.auth import cache_scope, principal_of, require_scope
from flexiai_django.chat_types import ChatRequest, Message
from flexiai_django.ordering import UnknownModel
from flexiai_django.responses import trace_headers, with_headers
from flexiai_django.views.sessions import HEADER, create_session, find_session, settle
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


def _object(request: HttpRequest) -> dict[str, Any] | None:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


@csrf_exempt
@require_POST
@require_scope("chat")
async def initiate_call(request: HttpRequest) -> HttpResponse:
    """The seed's ``POST /initiate_call`` (``{"model"?}``): a new session; its id and pin."""
    body = _object(request)
    if body is None:
        return _error("Body must be a JSON object.", 400)
    created = await create_session(principal_of(request), {"model": body.get("model")})
    if isinstance(created, HttpResponse):
        return created
    session = created[0]
    return JsonResponse({"session_id": session.id, **session.to_dict()}, status=201)


@csrf_exempt
@require_POST
@require_scope("chat")
async def chat_completions(request: HttpRequest) -> HttpResponse:
    """The seed's ``POST /chat_completions`` (``{"session_id", "message", "model"?}``): one
    turn on the session's pinned provider; ``model`` overrides the session's for this turn."""
    body = _object(request)
    if body is None or not isinstance(body.get("session_id"), str):
        return _error("Send {'session_id': ..., 'message': ...} as JSON.", 400)
    model = body.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        return _error("'model' must be a non-empty string.", 400)
    found = await find_session(request, body["session_id"])
    if isinstance(found, HttpResponse):
        return found
    session, scope = found, cache_scope(principal_of(request))

    async def call(message: str) -> flexiai_django.ChatResult:
        turn = ChatRequest(messages=(Message("user", message),), model=model or session.model,
                           cache_scope=scope, pinned=session.provider)
        result = await chain.acomplete(turn)
        await settle(request, session, result.provider, result.tier, result.trail)
        return result

    try:
        response = await _serve(request, "message", call)
    except UnknownModel as exc:
        return _error(f"The model '{exc}' does not exist or is not enabled.", 404)
    response[HEADER] = session.id
    return response


@ensure_csrf_cookie  # the page's script sends it back as X-CSRFToken
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "flexiai_site/index.html")
