"""The Ollama chat format (``/api/chat``): streams by default, as newline-delimited JSON.

Tool calls come whole (arguments as an object, not JSON text), in one line of the
stream; see ``base`` for why formats are separate.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from flexiai_django.testing.fake_upstream.formats.base import ApiFormat, Frames, Reply


class Ollama(ApiFormat):
    name = "ollama"
    path = "/api/chat"
    stream_by_default = True
    stream_content_type = "application/x-ndjson"
    too_long_message = "the input length exceeds the context length"
    malformed_body = b'{"model": "fake", "message": {"role": "assistant", "content": <<<'
    malformed_frames = (b'{"model": "fake", "message": {"content": ###\n',)

    def error_document(self, status: int, message: str) -> dict[str, Any]:
        return {"error": message}

    def document(self, reply: Reply) -> dict[str, Any]:
        return _message(reply, reply.content, done=True, calls=True)

    def frames(self, reply: Reply) -> Frames:
        pieces = [_ndjson(_message(reply, piece, done=False)) for piece in reply.pieces()]
        if reply.tool_calls:
            pieces.append(_ndjson(_message(reply, "", done=False, calls=True)))
        return [], pieces, [_ndjson(_message(reply, "", done=True))]


def _message(reply: Reply, content: str, done: bool, calls: bool = False) -> dict[str, Any]:
    """One reply line; the last (``done``) carries the stop reason and token counts."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls and reply.tool_calls:
        message["tool_calls"] = [{"function": {"name": c.name, "arguments": c.arguments}}
                                 for c in reply.tool_calls]
    doc: dict[str, Any] = {
        "model": reply.model,
        "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "message": message,
        "done": done,
    }
    if done:
        doc |= {
            "done_reason": "stop",
            "prompt_eval_count": reply.prompt_tokens,
            "eval_count": reply.completion_tokens,
        }
    return doc


def _ndjson(data: Any) -> bytes:
    return (json.dumps(data) + "\n").encode()
