"""Anthropic messages API; the translation both ways is in :mod:`.translate_anthropic`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flexiai_django.chat_types import ChatRequest, Completion, StreamDelta

from . import translate_anthropic as translate
from .base import ProviderAdapter

API_VERSION = "2023-06-01"


class AnthropicAdapter(ProviderAdapter):
    kind = "anthropic"
    default_base_url = "https://api.anthropic.com"
    chat_path = "/v1/messages"
    #: ``user`` goes as ``metadata.user_id``; OpenAI's ``metadata`` has no home here.
    honours = frozenset({"tools", "tool_choice", "parallel_tool_calls", "response_format",
                         "user"})
    #: A final assistant turn is where the answer starts (without trailing whitespace).
    prefill = True

    def headers(self) -> dict[str, str]:
        headers = {"anthropic-version": API_VERSION}
        if self.config.api_key:
            headers["x-api-key"] = self.config.api_key
        return headers

    def payload(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        return translate.payload(request, self.config.model, stream=stream)

    def parse(self, data: Any) -> Completion:
        return translate.completion(data, self.config.model, json_answer=False)

    def parse_reply(self, data: Any, request: ChatRequest) -> Completion:
        return translate.completion(data, self.config.model, translate.json_tool(request))

    def parse_event(self, event: str | None, data: str) -> StreamDelta | None:
        """One event out of context; streams use :meth:`event_parser`'s stateful one."""
        return translate.StreamTranslator(json_answer=False)(event, data)

    def event_parser(self, request: ChatRequest) -> Callable[[str | None, str],
                                                             StreamDelta | None]:
        return translate.StreamTranslator(translate.json_tool(request))
