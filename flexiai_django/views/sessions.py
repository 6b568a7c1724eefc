"""``/v1/sessions``: create, read and end sessions, and the chat API's use of them.

``POST /v1/sessions`` (``{"id"?, "model"?}``) pins a new session to the provider the chain
would pick first now for its model; ``GET``/``DELETE /v1/sessions/<id>`` read (and
refresh) or end it. Sessions belong to the caller (API key or user) that made them:
any other caller gets a 404. :func:`open_session` and :func:`settle` are what
``/v1/chat/completions`` does with ``X-FlexiAI-Session`` (or the ``user`` field when
``SESSION_FROM_USER_FIELD``): route to the pin, then move it when the pin could not serve.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from flexiai_django import ordering, sessions
from flexiai_django.auth import Principal, principal_of, require_scope
from flexiai_django.breakers import get_store
from flexiai_django.breakers.state import State
from flexiai_django.chat_types import Attempt, ChatRequest
from flexiai_django.conf import get_settings
from flexiai_django.provider_cache import aget_providers
from flexiai_django.providers.base import ProviderConfig
from flexiai_django.responses import error_response
from flexiai_django.session_store import (
    MemorySessions,
    Session,
    SessionsUnavailable,
    get_sessions,
)

logger = logging.getLogger("flexiai_django")

HEADER = "X-FlexiAI-Session"
DEFAULT_MODEL = "auto"
#: Breaker states in which a provider takes a new session now.
SERVING = frozenset({State.CLOSED, State.HALF_OPEN})

T = TypeVar("T")


async def _call(fn: Callable[..., T], *args: Any) -> T:
    """A store call: in a thread for Redis (never block the loop), inline in memory."""
    if isinstance(get_sessions(), MemorySessions):
        return fn(*args)
    return await asyncio.to_thread(fn, *args)


def _not_found(session_id: str) -> HttpResponse:
    return error_response(404, f"No session '{session_id}' (unknown, expired or not yours).",
                          code="session_not_found")


def _unavailable() -> HttpResponse:
    return error_response(503, "The session store cannot be reached; try again shortly.",
                          type_="service_unavailable", code="sessions_unavailable",
                          headers={"Retry-After": "1"})


def _invalid_id() -> HttpResponse:
    return error_response(400, "A session id is 1 to 64 letters, digits, '-' or '_'.",
                          code="invalid_session_id", param="id")


def first_serving(providers: Sequence[ProviderConfig], model: str) -> str | None:
    """The provider the chain would try first now for ``model``: in routing order, the
    first whose breaker admits calls and that is not warming (a session is never pinned to
    a cold model); None when none does (the first answer pins it)."""
    ordered = ordering.order(ordering.select(providers, model, get_settings().MODEL_ALIASES))
    store = get_store()
    for provider in ordered:
        if not provider.warming and store.get(provider.breaker_name).state in SERVING:
            return provider.name
    return None


async def create_session(principal: Principal, data: dict[str, Any]
                         ) -> tuple[Session, bool] | HttpResponse:
    """Make (or find) ``principal``'s session from ``{"id"?, "model"?}``: the session and
    whether it is new, or the error to answer."""
    session_id = data.get("id") or sessions.new_id()
    if not sessions.valid_id(session_id):
        return _invalid_id()
    model = data.get("model") or DEFAULT_MODEL
    if not isinstance(model, str):
        return error_response(400, "'model' must be a string.", code="invalid_value",
                              param="model")
    try:
        provider = await asyncio.to_thread(first_serving, await aget_providers(), model)
    except ordering.UnknownModel:
        return error_response(404, f"The model '{model}' does not exist or is not enabled.",
                              code="model_not_found", param="model")
    try:
        return await _call(get_sessions().create, principal.id, session_id, model, provider)
    except SessionsUnavailable:
        return _unavailable()


async def find_session(request: HttpRequest, session_id: str) -> Session | HttpResponse:
    """The caller's session of that id (its TTL refreshed), or the error to answer."""
    if not sessions.valid_id(session_id):
        return _invalid_id()
    try:
        session = await _call(get_sessions().get, principal_of(request).id, session_id)
    except SessionsUnavailable:
        return _unavailable()
    return _not_found(session_id) if session is None else session


@csrf_exempt
@require_scope("chat")
async def collection(request: HttpRequest) -> HttpResponseBase:
    """``POST /v1/sessions``: a new session (or the caller's existing one of that id)."""
    if request.method != "POST":
        return error_response(405, "Use POST.", code="method_not_allowed",
                              headers={"Allow": "POST"})
    if len(request.body) > 4096:
        return error_response(413, "The body is too large.", code="request_too_large")
    try:
        data = orjson.loads(request.body or b"{}")
    except orjson.JSONDecodeError:
        return error_response(400, "The body is not valid JSON.", code="invalid_json")
    if not isinstance(data, dict):
        return error_response(400, "The body must be a JSON object.", code="invalid_body")
    created = await create_session(principal_of(request), data)
    if isinstance(created, HttpResponse):
        return created
    session, made = created
    return JsonResponse(session.to_dict(), status=201 if made else 200)


@csrf_exempt
@require_scope("chat")
async def detail(request: HttpRequest, session_id: str) -> HttpResponseBase:
    """``GET`` (refreshes its TTL) or ``DELETE /v1/sessions/<id>``."""
    if request.method not in ("GET", "DELETE"):
        return error_response(405, "Use GET or DELETE.", code="method_not_allowed",
                              headers={"Allow": "GET, DELETE"})
    if not sessions.valid_id(session_id):
        return _not_found(session_id[:64])
    owner, store = principal_of(request).id, get_sessions()
    try:
        if request.method == "DELETE":
            if not await _call(store.delete, owner, session_id):
                return _not_found(session_id)
            return JsonResponse({"id": session_id, "object": "session", "deleted": True})
        session = await _call(store.get, owner, session_id)
    except SessionsUnavailable:
        return _unavailable()
    if session is None:
        return _not_found(session_id)
    return JsonResponse(session.to_dict())


# -- what /v1/chat/completions does with a session ---------------------------------------


def requested_id(request: HttpRequest, chat: ChatRequest) -> tuple[str | None, bool]:
    """The session a chat request names, and whether it was named explicitly (header).

    A ``user`` field (``SESSION_FROM_USER_FIELD``) that is not a valid id is hashed into one.
    """
    header = request.headers.get(HEADER)
    if header is not None:
        return header, True
    if get_settings().SESSION_FROM_USER_FIELD and chat.user:
        user = chat.user
        if not sessions.valid_id(user):
            user = "u_" + hashlib.sha256(user.encode()).hexdigest()[:40]
        return user, False
    return None, False


async def open_session(request: HttpRequest, chat: ChatRequest
                       ) -> tuple[Session | None, str | None, HttpResponseBase | None]:
    """(session, its id, an error to answer instead). A header naming an unknown session
    is a 404; a ``user`` field's session is made on first use. A store that cannot be
    reached serves the request without its pin."""
    session_id, explicit = requested_id(request, chat)
    if session_id is None:
        return None, None, None
    if not sessions.valid_id(session_id):
        return None, None, _invalid_id()
    owner, store = principal_of(request).id, get_sessions()
    try:
        if explicit:
            session = await _call(store.get, owner, session_id)
            if session is None:
                return None, session_id, _not_found(session_id)
        else:
            session, _ = await _call(store.create, owner, session_id,
                                     chat.model or DEFAULT_MODEL, None)
    except SessionsUnavailable as exc:
        logger.warning("session store unavailable (%s); serving without the pin", exc)
        return None, session_id, None
    return session, session_id, None


async def settle(request: HttpRequest, session: Session | None, answered: str | None,
                 tier: str, trail: Sequence[Attempt]) -> None:
    """After an answer: move the session once if its pinned provider could not serve."""
    if session is None:
        return
    target = sessions.moved_to(session.provider, answered if tier == "provider" else None,
                               trail)
    if target is None:
        return
    try:
        await _call(get_sessions().move, principal_of(request).id, session.id,
                    session.provider, target)
    except SessionsUnavailable as exc:
        logger.warning("session store unavailable (%s); session %s not moved", exc,
                       session.id)
