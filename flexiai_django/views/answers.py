"""Answers in OpenAI's shapes: a ``chat.completion`` and the SSE chunks of a stream.

Pure rendering, apart from the view: a tool-call answer has ``content: null`` and
``finish_reason: "tool_calls"``; streamed tool calls go out as OpenAI's incremental
``delta.tool_calls`` pieces; refusal and logprobs are passed on where the provider gave them.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson

from flexiai_django.chat_stream import AsyncChatStream, ChatStream
from flexiai_django.chat_types import ChatResult, Choice, StreamDelta, Usage
from flexiai_django.errors import StreamInterrupted
from flexiai_django.ids import hex_id
from flexiai_django.providers import openai_shape

DROPPED_HEADER = "X-FlexiAI-Dropped-Params"


def usage_body(usage: Usage) -> dict[str, int]:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens}


def message_body(answer: ChatResult | Choice) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": answer.content if answer.content or not (
            answer.tool_calls or answer.refusal) else None,
    }
    if answer.tool_calls:
        message["tool_calls"] = [openai_shape.tool_call(c) for c in answer.tool_calls]
    if answer.refusal is not None:
        message["refusal"] = answer.refusal
    return message


def choice_body(answer: ChatResult | Choice, index: int) -> dict[str, Any]:
    return {"index": index, "finish_reason": answer.finish_reason or "stop",
            "message": message_body(answer), "logprobs": answer.logprobs}


def completion_body(result: ChatResult, requested: str | None) -> dict[str, Any]:
    """A ``chat.completion``: one choice, or ``n`` when the request asked for several."""
    choices = [choice_body(result, 0), *(choice_body(c, c.index) for c in result.more)]
    return {
        "id": f"chatcmpl-{hex_id()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": result.model or requested or "flexiai",
        "choices": choices,
        "usage": usage_body(result.usage),
        "flexiai": {"provider": result.provider, "tier": result.tier,
                    "attempts": result.attempts, "latency_ms": round(result.latency_ms, 1)},
    }


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def delta_body(delta: StreamDelta) -> dict[str, Any]:
    """The ``delta`` of one chunk: only what this piece adds."""
    body: dict[str, Any] = {}
    if delta.content:
        body["content"] = delta.content
    if delta.refusal:
        body["refusal"] = delta.refusal
    if delta.tool_calls:
        body["tool_calls"] = [openai_shape.tool_call_delta(c) for c in delta.tool_calls]
    return body


def continued_meta(result: ChatResult) -> dict[str, Any]:
    """What the last chunks of a continued stream add to ``flexiai``: that it was continued
    and who wrote it, in order (the provider named before the first chunk broke off)."""
    return {"provider": result.provider, "attempts": result.attempts, "continued": True,
            "providers": [*result.continued_from, result.provider]}


class SseWriter:
    """One stream's OpenAI chunks, event by event, for an async or a sync loop alike.

    A stream continued on another provider mid-answer (:mod:`flexiai_django.streams`)
    reads as one answer; its finish and usage chunks say so in ``flexiai``
    (:func:`continued_meta`), which the openai SDK keeps (``chunk.model_extra``). One
    that cannot be continued ends with an error event instead, as OpenAI's do.
    """

    def __init__(self, stream: ChatStream, requested: str | None, include_usage: bool) -> None:
        self.id = f"chatcmpl-{hex_id()}"
        self.created = int(time.time())
        self.model = stream.model or requested or "flexiai"
        self.include_usage = include_usage
        self.meta: dict[str, Any] = {"provider": stream.provider, "tier": stream.tier,
                                     "attempts": stream.attempts}

    def _chunk(self, delta: dict[str, Any], finish: str | None = None,
               logprobs: Any = None, index: int = 0) -> bytes:
        choice = {"index": index, "delta": delta, "finish_reason": finish}
        if logprobs is not None:
            choice["logprobs"] = logprobs
        return _event({"id": self.id, "object": "chat.completion.chunk",
                       "created": self.created, "model": self.model, "flexiai": self.meta,
                       "choices": [choice]})

    def start(self) -> bytes:
        return self._chunk({"role": "assistant", "content": ""})

    def piece(self, delta: StreamDelta) -> bytes | None:
        body = delta_body(delta)
        # The first answer's finish goes out last, with usage; others' (n > 1) as they end.
        finish = delta.finish_reason if delta.choice else None
        if body or delta.logprobs is not None or finish:
            return self._chunk(body, finish, delta.logprobs, delta.choice)
        return None

    @staticmethod
    def interrupted(exc: StreamInterrupted) -> bytes:
        return _event({"error": {"message": str(exc), "type": "server_error",
                                 "code": "stream_interrupted", "param": None}})

    def end(self, result: ChatResult | None) -> list[bytes]:
        meta = self.meta
        if result is not None and result.continued:
            meta = self.meta = {**meta, **continued_meta(result)}
        events = [self._chunk({}, (result.finish_reason if result else None) or "stop")]
        if self.include_usage and result is not None:
            last = {"flexiai": meta} if result.continued else {}
            events.append(_event({"id": self.id, "object": "chat.completion.chunk",
                                  "created": self.created, "model": self.model,
                                  "choices": [], "usage": usage_body(result.usage), **last}))
        events.append(b"data: [DONE]\n\n")
        return events


async def sse_events(stream: AsyncChatStream, requested: str | None,
                     include_usage: bool) -> AsyncIterator[bytes]:
    """The answer as OpenAI's chunks, then the finish chunk, usage if asked, ``[DONE]``."""
    out = SseWriter(stream, requested, include_usage)
    yield out.start()
    try:
        async for delta in stream.adeltas():
            if (event := out.piece(delta)) is not None:
                yield event
    except StreamInterrupted as exc:
        yield out.interrupted(exc)
        return
    for event in out.end(stream.result):
        yield event


def sse_events_sync(stream: ChatStream, requested: str | None,
                    include_usage: bool) -> Iterator[bytes]:
    """:func:`sse_events` for a WSGI server, which can only stream a sync iterator (given
    an async one, Django collects it whole first, on another event loop)."""
    out = SseWriter(stream, requested, include_usage)
    yield out.start()
    try:
        for delta in stream.deltas():
            if (event := out.piece(delta)) is not None:
                yield event
    except StreamInterrupted as exc:
        yield out.interrupted(exc)
        return
    yield from out.end(stream.result)
