"""The Ollama chat format (``/api/chat``): streams by default, as newline-delimited JSON.

See ``base`` for why formats are separate.
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
    malformed_body = b'{"model": "fake", "message": {"role": "assistant", "content": <<<'
    malformed_frames = (b'{"model": "fake", "message": {"content": ###\n',)

    def error_document(self, status: int, message: str) -> dict[str, Any]:
        return {"error": message}

    def document(self, reply: Reply) -> dict[str, Any]:
        return _message(reply, reply.content, done=True)

    def frames(self, reply: Reply) -> Frames:
        return (
            [],
            [_ndjson(_message(reply, piece, done=False)) for piece in reply.pieces()],
            [_ndjson(_message(reply, "", done=True))],
        )


def _message(reply: Reply, content: str, done: bool) -> dict[str, Any]:
    """One reply line; the last (``done``) carries the stop reason and token counts."""
    doc: dict[str, Any] = {
        "model": reply.model,
        "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "message": {"role": "assistant", "content": content},
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
