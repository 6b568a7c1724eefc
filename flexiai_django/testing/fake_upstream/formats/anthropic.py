"""The Anthropic messages format (``/v1/messages``), whole and streamed as typed events.

Anthropic differs from the others in its auth header, its error types and its event
stream; see ``base`` for why formats are separate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flexiai_django.testing.fake_upstream.formats.base import (
    COMMON_ERROR_TYPES,
    ApiFormat,
    Frames,
    Reply,
    sse,
)

_ERROR_TYPES = {413: "request_too_large", 529: "overloaded_error"}


class Anthropic(ApiFormat):
    name = "anthropic"
    path = "/v1/messages"
    malformed_body = b'{"id": "msg_fake", "type": "message", "content": [{"type": "text", "te'
    malformed_frames = (
        b'event: content_block_delta\ndata: {"type": "content_block_delta", ###\n\n',
    )

    def authorized(self, headers: Mapping[str, str], key: str) -> bool:
        return headers.get("x-api-key") == key

    def error_type(self, status: int) -> str:
        return COMMON_ERROR_TYPES.get(status) or _ERROR_TYPES.get(status, "api_error")

    def error_document(self, status: int, message: str) -> dict[str, Any]:
        return {"type": "error", "error": {"type": self.error_type(status), "message": message}}

    def document(self, reply: Reply) -> dict[str, Any]:
        text = [{"type": "text", "text": reply.content}]
        usage = {"input_tokens": reply.prompt_tokens, "output_tokens": reply.completion_tokens}
        return _message(reply, text, "end_turn", usage)

    def frames(self, reply: Reply) -> Frames:
        usage = {"input_tokens": reply.prompt_tokens, "output_tokens": 0}
        preamble = [
            _event({"type": "message_start", "message": _message(reply, [], None, usage)}),
            _event(
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                }
            ),
        ]
        body = [
            _event(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                }
            )
            for piece in reply.pieces()
        ]
        epilogue = [
            _event({"type": "content_block_stop", "index": 0}),
            _event(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": reply.completion_tokens},
                }
            ),
            _event({"type": "message_stop"}),
        ]
        return preamble, body, epilogue


def _message(
    reply: Reply, content: list[dict[str, Any]], stop: str | None, usage: dict[str, int]
) -> dict[str, Any]:
    """A message object: the whole reply, or the empty one a stream starts with."""
    return {
        "id": f"msg_fake_{reply.number}",
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage,
    }


def _event(data: dict[str, Any]) -> bytes:
    """A stream event, named after its ``type`` as Anthropic's are."""
    return sse(data, data["type"])
