"""Ollama's native chat API (``/api/chat``), streamed as NDJSON."""

from __future__ import annotations

from typing import Any

import orjson

from flexiai_django.chat_types import ChatRequest, Completion, StreamDelta, Usage

from .base import ProviderAdapter, messages_as_dicts


class OllamaAdapter(ProviderAdapter):
    kind = "ollama"
    default_base_url = "http://127.0.0.1:11434"
    chat_path = "/api/chat"
    stream_format = "ndjson"

    def headers(self) -> dict[str, str]:
        key = self.config.api_key
        return {"authorization": f"Bearer {key}"} if key else {}

    def payload(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.top_p is not None:
            options["top_p"] = request.top_p
        if request.max_tokens is not None:
            options["num_predict"] = request.max_tokens
        if request.stop:
            options["stop"] = list(request.stop)
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages_as_dicts(request),
            "stream": stream,
        }
        if options:
            body["options"] = options
        return body

    def parse(self, data: Any) -> Completion:
        if "error" in data:
            raise ValueError("error reply")
        content = data["message"]["content"]
        if not isinstance(content, str):
            raise TypeError("content is not text")
        return Completion(
            content=content,
            model=str(data.get("model") or self.config.model),
            finish_reason=data.get("done_reason", "stop"),
            usage=Usage(int(data.get("prompt_eval_count", 0)), int(data.get("eval_count", 0))),
        )

    def parse_event(self, event: str | None, data: str) -> StreamDelta | None:
        chunk = orjson.loads(data)
        if "error" in chunk:
            raise ValueError("error event in stream")
        content = str((chunk.get("message") or {}).get("content", ""))
        if chunk.get("done"):
            usage = Usage(int(chunk.get("prompt_eval_count", 0)), int(chunk.get("eval_count", 0)))
            return StreamDelta(content=content, finish_reason=chunk.get("done_reason", "stop"),
                               final=True, usage=usage)
        return StreamDelta(content=content, model=chunk.get("model"))
