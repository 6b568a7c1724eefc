"""The Anthropic messages format (``/v1/messages``), whole and streamed as typed events.

Anthropic differs from the others in its auth header, its error types, its event stream
and its tools (``tool_use`` / ``tool_result`` blocks, arguments streamed as
``input_json_delta``); see ``base`` for why formats are separate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flexiai_django.testing.fake_upstream.formats.base import (
    COMMON_ERROR_TYPES,
    ApiFormat,
    Frames,
    Reply,
    last_message,
    sse,
    text_of,
)

_ERROR_TYPES = {413: "request_too_large", 529: "overloaded_error"}


class Anthropic(ApiFormat):
    name = "anthropic"
    path = "/v1/messages"
    call_id_prefix = "toolu_fake_"
    too_long_message = "prompt is too long: 210000 tokens > 200000 maximum"
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

    def tool_result(self, payload: Mapping[str, Any]) -> str | None:
        message = last_message(payload)
        content = message.get("content")
        if message.get("role") != "user" or not isinstance(content, list):
            return None
        results = [text_of(b.get("content")) for b in content
                   if isinstance(b, dict) and b.get("type") == "tool_result"]
        return " ".join(results) if results else None

    def tool_to_call(self, payload: Mapping[str, Any]) -> str | None:
        names = [t.get("name") for t in payload.get("tools") or () if isinstance(t, dict)]
        choice = payload.get("tool_choice") or {}
        if not names or choice.get("type") == "none":
            return None
        if choice.get("type") == "tool":
            return str(choice.get("name"))
        return str(names[0])

    def document(self, reply: Reply) -> dict[str, Any]:
        blocks: list[dict[str, Any]] = [{"type": "text", "text": reply.content}] if (
            reply.content or not reply.tool_calls) else []
        blocks += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}
                   for c in reply.tool_calls]
        usage = {"input_tokens": reply.prompt_tokens, "output_tokens": reply.completion_tokens}
        return _message(reply, blocks, _stop_reason(reply), usage)

    def frames(self, reply: Reply) -> Frames:
        usage = {"input_tokens": reply.prompt_tokens, "output_tokens": 0}
        text = bool(reply.content or not reply.tool_calls)
        preamble = [_event({"type": "message_start",
                            "message": _message(reply, [], None, usage)})]
        body: list[bytes] = []
        if text:
            preamble.append(_event({"type": "content_block_start", "index": 0,
                                    "content_block": {"type": "text", "text": ""}}))
            body = [_event({"type": "content_block_delta", "index": 0,
                            "delta": {"type": "text_delta", "text": piece}})
                    for piece in reply.pieces()]
        for n, call in enumerate(reply.tool_calls):
            index = n + int(text)
            # A block's stop goes out with the next block's start: one frame per piece.
            stop = _event({"type": "content_block_stop", "index": index - 1}) if index else b""
            start = _event({"type": "content_block_start", "index": index,
                            "content_block": {"type": "tool_use", "id": call.id,
                                              "name": call.name, "input": {}}})
            body.append(stop + start)
            body += [_event({"type": "content_block_delta", "index": index,
                             "delta": {"type": "input_json_delta", "partial_json": piece}})
                     for piece in call.argument_pieces()]
        last = len(reply.tool_calls) + int(text) - 1
        epilogue = [
            _event({"type": "content_block_stop", "index": last}),
            _event({"type": "message_delta",
                    "delta": {"stop_reason": _stop_reason(reply), "stop_sequence": None},
                    "usage": {"output_tokens": reply.completion_tokens}}),
            _event({"type": "message_stop"}),
        ]
        return preamble, body, epilogue


def _stop_reason(reply: Reply) -> str:
    if reply.refusal:
        return "refusal"
    return "tool_use" if reply.tool_calls else "end_turn"


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
