"""``POST /v1/chat/completions``: OpenAI's API in front of the fallback chain.

Plain requests get a ``chat.completion``; ``stream: true`` gets Server-Sent Events in
OpenAI's chunk format ending with ``data: [DONE]``. Failover happens before the response
starts; a failure after the first chunk ends the stream with an error event. Every
answer says who served it: ``X-FlexiAI-Provider``/``-Tier``/``-Attempts`` headers and a
``flexiai`` field.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from flexiai_django import responses, services
from flexiai_django.auth import cache_scope, principal_of, require_scope
from flexiai_django.chat_types import ChatResult
from flexiai_django.conf import get_settings
from flexiai_django.errors import BadRequest, NoProviderAvailable, StreamInterrupted
from flexiai_django.ordering import UnknownModel
from flexiai_django.responses import error_response, trace_headers, with_headers
from flexiai_django.streams import AsyncChatStream
from flexiai_django.validation import APIRequest, InvalidRequest, parse


def unavailable(exc: NoProviderAvailable) -> HttpResponse:
    return responses.unavailable(str(exc), exc.retry_after)


def completion_body(result: ChatResult, requested: str | None) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": result.model or requested or "flexiai",
        "choices": [{"index": 0, "finish_reason": result.finish_reason or "stop",
                     "message": {"role": "assistant", "content": result.content}}],
        "usage": {"prompt_tokens": result.usage.prompt_tokens,
                  "completion_tokens": result.usage.completion_tokens,
                  "total_tokens": result.usage.total_tokens},
        "flexiai": {"provider": result.provider, "tier": result.tier,
                    "attempts": result.attempts, "latency_ms": round(result.latency_ms, 1)},
    }


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


async def sse_events(stream: AsyncChatStream, api: APIRequest) -> AsyncIterator[bytes]:
    chunk_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    model = stream.model or api.chat.model or "flexiai"
    meta = {"provider": stream.provider, "tier": stream.tier, "attempts": stream.attempts}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _event({"id": chunk_id, "object": "chat.completion.chunk", "created": created,
                       "model": model, "flexiai": meta,
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    yield chunk({"role": "assistant", "content": ""})
    try:
        async for piece in stream:
            yield chunk({"content": piece})
    except StreamInterrupted as exc:
        yield _event({"error": {"message": str(exc), "type": "server_error",
                                "code": "stream_interrupted", "param": None}})
        return
    result = stream.result
    yield chunk({}, (result.finish_reason if result else None) or "stop")
    if api.include_usage and result is not None:
        yield _event({"id": chunk_id, "object": "chat.completion.chunk", "created": created,
                      "model": model, "choices": [],
                      "usage": {"prompt_tokens": result.usage.prompt_tokens,
                                "completion_tokens": result.usage.completion_tokens,
                                "total_tokens": result.usage.total_tokens}})
    yield b"data: [DONE]\n\n"


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
    params = {**_params(api), "cache_scope": cache_scope(principal_of(request))}
    try:
        if api.stream:
            stream = await services.astream(api.chat.messages, **params)
            events = StreamingHttpResponse(sse_events(stream, api),
                                           content_type="text/event-stream")
            events["Cache-Control"] = "no-cache"
            events["X-Accel-Buffering"] = "no"
            return with_headers(events, trace_headers(stream.provider, stream.tier,
                                                      stream.attempts))
        result = await services.achat(api.chat.messages, **params)
    except UnknownModel as exc:
        return error_response(404, f"The model '{exc}' does not exist or is not enabled.",
                              code="model_not_found", param="model")
    except BadRequest as exc:
        return error_response(400, exc.message, code="upstream_rejected_request")
    except NoProviderAvailable as exc:
        return unavailable(exc)
    response = HttpResponse(orjson.dumps(completion_body(result, api.chat.model)),
                            content_type="application/json")
    return with_headers(response, trace_headers(result.provider, result.tier, result.attempts))


def _params(api: APIRequest) -> dict[str, Any]:
    c = api.chat
    return {"model": c.model, "temperature": c.temperature, "max_tokens": c.max_tokens,
            "top_p": c.top_p, "stop": c.stop, "user": c.user}
