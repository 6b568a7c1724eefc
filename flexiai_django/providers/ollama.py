"""Ollama's native chat API (``/api/chat``), streamed as NDJSON; the translation both ways
is in :mod:`.translate_ollama`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flexiai_django.chat_types import ChatRequest, Completion, StreamDelta

from . import translate_ollama as translate
from .base import ProviderAdapter


class OllamaAdapter(ProviderAdapter):
    kind = "ollama"
    default_base_url = "http://127.0.0.1:11434"
    chat_path = "/api/chat"
    stream_format = "ndjson"
    honours = frozenset({"tools", "tool_choice", "parallel_tool_calls", "response_format",
                         "seed", "presence_penalty", "frequency_penalty"})
    #: A final assistant turn is continued, not answered.
    prefill = True

    def headers(self) -> dict[str, str]:
        key = self.config.api_key
        return {"authorization": f"Bearer {key}"} if key else {}

    def unsupported(self, request: ChatRequest) -> tuple[str, ...]:
        return super().unsupported(request) + translate.unsupported(request)

    def payload(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        return translate.payload(request, self.config.model, stream=stream)

    def parse(self, data: Any) -> Completion:
        return translate.completion(data, self.config.model)

    def parse_event(self, event: str | None, data: str) -> StreamDelta | None:
        """One line out of context; streams use :meth:`event_parser`'s numbering one."""
        return translate.StreamTranslator()(event, data)

    def event_parser(self, request: ChatRequest) -> Callable[[str | None, str],
                                                             StreamDelta | None]:
        return translate.StreamTranslator()
