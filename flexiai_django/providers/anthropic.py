"""Anthropic messages API."""

from __future__ import annotations

from typing import Any

import orjson

from flexiai_django.chat_types import ChatRequest, Completion, StreamDelta, Usage

from .base import ProviderAdapter

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}


class AnthropicAdapter(ProviderAdapter):
    kind = "anthropic"
    default_base_url = "https://api.anthropic.com"
    chat_path = "/v1/messages"

    def headers(self) -> dict[str, str]:
        headers = {"anthropic-version": API_VERSION}
        if self.config.api_key:
            headers["x-api-key"] = self.config.api_key
        return headers

    def payload(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        body: dict[str, Any] = {
            "model": self.config.model,
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
            "messages": [
                {"role": m.role, "content": m.content}
                for m in request.messages
                if m.role != "system"
            ],
            "stream": stream,
        }
        if system:
            body["system"] = system
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        return body

    def parse(self, data: Any) -> Completion:
        text = "".join(
            block["text"] for block in data["content"] if block.get("type") == "text"
        )
        usage = data.get("usage") or {}
        return Completion(
            content=text,
            model=str(data.get("model") or self.config.model),
            finish_reason=_FINISH.get(data.get("stop_reason") or "", data.get("stop_reason")),
            usage=Usage(int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))),
        )

    def parse_event(self, event: str | None, data: str) -> StreamDelta | None:
        payload = orjson.loads(data)
        kind = payload.get("type", event)
        if kind == "content_block_delta":
            delta = payload["delta"]
            return StreamDelta(content=str(delta.get("text", ""))) if delta.get(
                "type") == "text_delta" else None
        if kind == "message_start":
            usage = (payload.get("message") or {}).get("usage") or {}
            return StreamDelta(usage=Usage(int(usage.get("input_tokens", 0)), 0))
        if kind == "message_delta":
            reason = (payload.get("delta") or {}).get("stop_reason")
            output = int((payload.get("usage") or {}).get("output_tokens", 0))
            return StreamDelta(finish_reason=_FINISH.get(reason or "", reason),
                               usage=Usage(0, output))
        if kind == "message_stop":
            return StreamDelta(final=True)
        if kind == "error":
            raise ValueError("error event in stream")
        return None
