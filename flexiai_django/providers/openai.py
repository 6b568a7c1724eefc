"""OpenAI chat completions, and any server that speaks the same API."""

from __future__ import annotations

from typing import Any

import orjson

from flexiai_django.chat_types import ChatRequest, Completion, StreamDelta, Usage

from .base import ProviderAdapter, messages_as_dicts


class OpenAIAdapter(ProviderAdapter):
    kind = "openai"
    default_base_url = "https://api.openai.com/v1"
    chat_path = "/chat/completions"
    #: Ask for token usage at the end of a stream (not every compatible server knows it).
    reports_stream_usage = True

    def headers(self) -> dict[str, str]:
        key = self.config.api_key
        return {"authorization": f"Bearer {key}"} if key else {}

    def payload(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages_as_dicts(request),
            "stream": stream,
        }
        for name in ("temperature", "max_tokens", "top_p", "user"):
            value = getattr(request, name)
            if value is not None:
                body[name] = value
        if request.stop:
            body["stop"] = list(request.stop)
        if stream and self.reports_stream_usage:
            body["stream_options"] = {"include_usage": True}
        return body

    def parse(self, data: Any) -> Completion:
        choice = data["choices"][0]
        usage = data.get("usage") or {}
        content = choice["message"]["content"]
        if not isinstance(content, str):
            raise TypeError("content is not text")
        return Completion(
            content=content,
            model=str(data.get("model") or self.config.model),
            finish_reason=choice.get("finish_reason"),
            usage=Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))),
        )

    def parse_event(self, event: str | None, data: str) -> StreamDelta | None:
        if data.strip() == "[DONE]":
            return StreamDelta(final=True)
        chunk = orjson.loads(data)
        if "error" in chunk:
            raise ValueError("error event in stream")
        choices = chunk["choices"]
        if not choices:
            usage = chunk.get("usage")
            if usage:
                return StreamDelta(usage=Usage(int(usage.get("prompt_tokens", 0)),
                                               int(usage.get("completion_tokens", 0))))
            return None
        choice = choices[0]
        content = (choice.get("delta") or {}).get("content") or ""
        return StreamDelta(
            content=str(content),
            finish_reason=choice.get("finish_reason"),
            model=chunk.get("model"),
        )


class OpenAICompatibleAdapter(OpenAIAdapter):
    """vLLM, LM Studio, llama.cpp, Together, Groq…: OpenAI's API at another base URL."""

    kind = "openai_compatible"
    default_base_url = ""
    reports_stream_usage = False
