"""``POST /v1/chat/completions``: OpenAI's API in front of the fallback chain.

Plain requests get a ``chat.completion``; ``stream: true`` gets Server-Sent Events in
OpenAI's chunk format ending with ``data: [DONE]`` (shapes in :mod:`.answers`). Failover
happens before the response starts; after the first chunk, a broken stream is continued
on the next provider (its last chunks say so in ``flexiai``), or, when it can't be, ends
with an error event. Every answer says who served it: ``X-FlexiAI-Provider``/``-Tier``/
``-Attempts`` headers and a ``flexiai`` field; ``X-FlexiAI-Dropped-Params`` names request
fields the serving provider could not carry. Refusals keep their meaning: a field no
provider can carry is a 400 ``unsupported_parameter``, an upstream 413/422 stays a
413/422, a prompt too long for every window is a 400 ``context_length_exceeded``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from django.core.exceptions import RequestDataTooBig
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from flexiai_django import chain, responses, streams
from flexiai_django.auth import cache_scope, principal_of, require_scope
from flexiai_django.chat_stream import AsyncChatStream, ChatStream
from flexiai_django.chat_types import ChatRequest
from flexiai_django.conf import get_settings
from flexiai_django.errors import (
    BadRequest,
    ContextLengthExceeded,
    NoProviderAvailable,
    UnsupportedParameters,
)
from flexiai_django.ordering import UnknownModel
from flexiai_django.responses import error_response, trace_headers, with_headers
from flexiai_django.validation import InvalidRequest, parse
from flexiai_django.views.answers import (
    DROPPED_HEADER,
    completion_body,
    sse_events,
    sse_events_sync,
)
from flexiai_django.views.sessions import HEADER as SESSION_HEADER
from flexiai_django.views.sessions import open_session, settle

#: Upstream rejections passed on with their own status; anything else is a 400.
PASSED_ON = (413, 422)


def unavailable(exc: NoProviderAvailable) -> HttpResponse:
    return responses.unavailable(str(exc), exc.retry_after)


def rejected(exc: BadRequest | UnsupportedParameters) -> HttpResponse:
    """A request no provider will take, as OpenAI would say it."""
    if isinstance(exc, UnsupportedParameters):
        return error_response(400, str(exc), code="unsupported_parameter",
                              param=exc.fields[0] if exc.fields else None)
    if isinstance(exc, ContextLengthExceeded):
        return error_response(400, exc.message, code="context_length_exceeded",
                              param="messages")
    status = exc.status if exc.status in PASSED_ON else 400
    return error_response(status, exc.message, code="upstream_rejected_request")


def dropped(fields: tuple[str, ...]) -> dict[str, str]:
    return {DROPPED_HEADER: ", ".join(fields)} if fields else {}


async def _open_events(request: HttpRequest, chat: ChatRequest, include_usage: bool
                       ) -> tuple[StreamingHttpResponse, ChatStream]:
    """The SSE response and the stream behind it. An ASGI server streams an async
    iterator; a WSGI server (gunicorn sync/gthread workers) only a sync one, so there the
    stream is opened with the sync API, in the request's own thread, and read there."""
    stream: ChatStream
    if isinstance(request, ASGIRequest):
        stream = await streams.aopen_stream(chat)
        assert isinstance(stream, AsyncChatStream)
        body: Any = sse_events(stream, chat.model, include_usage)
    else:
        stream = await sync_to_async(streams.open_stream)(chat)
        body = sse_events_sync(stream, chat.model, include_usage)
    return StreamingHttpResponse(body, content_type="text/event-stream"), stream


@csrf_exempt
@require_scope("chat")
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    if request.method != "POST":
        return error_response(405, "Use POST.", code="method_not_allowed",
                              headers={"Allow": "POST"})
    limit = get_settings().MAX_BODY_BYTES
    declared = request.headers.get("Content-Length", "")
    try:
        too_big = (declared.isdigit() and int(declared) > limit) or len(request.body) > limit
    except RequestDataTooBig:
        too_big = True
    if too_big:
        return error_response(413, f"The body is larger than {limit} bytes.",
                              code="request_too_large")
    settings = get_settings()
    try:
        api = parse(request.body, max_tokens_limit=settings.MAX_TOKENS_LIMIT,
                    max_messages=settings.MAX_MESSAGES)
    except InvalidRequest as exc:
        return error_response(exc.status, exc.message, code=exc.code, param=exc.param)
    chat = dataclasses.replace(api.chat, cache_scope=cache_scope(principal_of(request)))
    session, session_id, refused = await open_session(request, chat)
    if refused is not None:
        return refused
    echo = {SESSION_HEADER: session_id} if session_id else {}
    if session is not None:
        chat = dataclasses.replace(chat, pinned=session.provider)
    try:
        if api.stream:
            events, stream = await _open_events(request, chat, api.include_usage)
            await settle(request, session, stream.provider, stream.tier, stream.trail)
            events["Cache-Control"] = "no-cache"
            events["X-Accel-Buffering"] = "no"
            return with_headers(events, {**trace_headers(stream.provider, stream.tier,
                                                         stream.attempts),
                                         **dropped(stream.dropped), **echo})
        result = await chain.acomplete(chat)
    except UnknownModel as exc:
        return error_response(404, f"The model '{exc}' does not exist or is not enabled.",
                              code="model_not_found", param="model")
    except (BadRequest, UnsupportedParameters) as exc:
        return rejected(exc)
    except NoProviderAvailable as exc:
        return unavailable(exc)
    await settle(request, session, result.provider, result.tier, result.trail)
    response = HttpResponse(orjson.dumps(completion_body(result, chat.model)),
                            content_type="application/json")
    return with_headers(response, {**trace_headers(result.provider, result.tier,
                                                   result.attempts), **dropped(result.dropped),
                                   **echo})
