"""OpenAI chat completions, and any server that speaks the same API.

The request goes out as the caller sent it (every field, every role, content parts and
tool calls); answers and stream chunks come back with their tool calls, refusal and
logprobs.
"""

from __future__ import annotations

from typing import Any

import orjson

from flexiai_django.chat_types import ChatRequest, Choice, Completion, StreamDelta, Usage

from . import openai_shape
from .base import MESSAGE_NAME, ProviderAdapter


def _usage(data: Any) -> Usage:
    return Usage(int(data.get("prompt_tokens") or 0), int(data.get("completion_tokens") or 0))


def _choice(choice: Any) -> Choice:
    """One answer of a reply; a tool call or a refusal with null content is an answer too."""
    message = choice["message"]
    content = message.get("content")
    tool_calls = openai_shape.parse_tool_calls(message.get("tool_calls"))
    refusal = message.get("refusal")
    if not isinstance(content, str) and not (content is None and (tool_calls or refusal)):
        raise TypeError("content is not text")
    return Choice(int(choice.get("index") or 0), content or "", choice.get("finish_reason"),
                  tool_calls, str(refusal) if refusal is not None else None,
                  choice.get("logprobs"))


class OpenAIAdapter(ProviderAdapter):
    kind = "openai"
    default_base_url = "https://api.openai.com/v1"
    chat_path = "/chat/completions"
    honours = frozenset({"tools", "tool_choice", "parallel_tool_calls", "response_format",
                         "seed", "presence_penalty", "frequency_penalty", "logit_bias",
                         "logprobs", "top_logprobs", "metadata", "user", "n",
                         MESSAGE_NAME})
    #: Ask for token usage at the end of every stream; a compatible server is asked only
    #: when the caller asks (``stream_options.include_usage``): not all of them know it.
    reports_stream_usage = True
    #: OpenAI answers a final assistant turn with a new one: no prefill.
    prefill = False

    def headers(self) -> dict[str, str]:
        key = self.config.api_key
        return {"authorization": f"Bearer {key}"} if key else {}

    def payload(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": [openai_shape.message(m) for m in request.messages],
            "stream": stream,
            **openai_shape.options(request),
        }
        if stream and (self.reports_stream_usage or request.include_usage):
            body["stream_options"] = {"include_usage": True}
        return body

    def parse(self, data: Any) -> Completion:
        first, *more = sorted((_choice(c) for c in data["choices"]), key=lambda c: c.index)
        return Completion(
            content=first.content,
            model=str(data.get("model") or self.config.model),
            finish_reason=first.finish_reason,
            usage=_usage(data.get("usage") or {}),
            tool_calls=first.tool_calls,
            refusal=first.refusal,
            logprobs=first.logprobs,
            more=tuple(more),
        )

    def parse_event(self, event: str | None, data: str) -> StreamDelta | None:
        if data.strip() == "[DONE]":
            return StreamDelta(final=True)
        chunk = orjson.loads(data)
        if "error" in chunk:
            raise ValueError("error event in stream")
        choices = chunk["choices"]
        usage = chunk.get("usage")
        if not choices:
            return StreamDelta(usage=_usage(usage), model=chunk.get("model")) if usage else None
        choice = choices[0]
        delta = choice.get("delta") or {}
        return StreamDelta(
            content=str(delta.get("content") or ""),
            finish_reason=choice.get("finish_reason"),
            model=chunk.get("model"),
            usage=_usage(usage) if usage else None,
            tool_calls=openai_shape.parse_tool_call_deltas(delta.get("tool_calls")),
            refusal=str(delta.get("refusal") or ""),
            logprobs=choice.get("logprobs"),
            choice=int(choice.get("index") or 0),
        )


class OpenAICompatibleAdapter(OpenAIAdapter):
    """vLLM, LM Studio, llama.cpp, Together, Groq…: OpenAI's API at another base URL."""

    kind = "openai_compatible"
    default_base_url = ""
    #: Some servers continue a final assistant turn (vLLM's ``continue_final_message``),
    #: but most answer it with a new turn and no error, which would repeat the answer from
    #: its start: the continuation instruction is the safe default. A subclass named in
    #: ``ADAPTERS`` may set it for a server known to continue.
    prefill = False
    reports_stream_usage = False
