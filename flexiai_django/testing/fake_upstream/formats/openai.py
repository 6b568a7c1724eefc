"""The OpenAI chat completions format (``/v1/chat/completions``), whole and streamed.

Also what OpenAI-compatible providers speak; see ``base`` for why formats are separate.
"""

from __future__ import annotations

from typing import Any

from flexiai_django.testing.fake_upstream.formats.base import (
    ApiFormat,
    FakeCall,
    Frames,
    Reply,
    sse,
)

_DONE = sse("[DONE]")


class OpenAI(ApiFormat):
    name = "openai"
    path = "/v1/chat/completions"
    base_path = "/v1"
    malformed_body = b'{"choices": [{"index": 0, "message": {"role": "assistant", ###'
    malformed_frames = (b'data: {"choices": [{"delta": {"content": ###\n\n', _DONE)

    def error_document(self, status: int, message: str) -> dict[str, Any]:
        kind = self.error_type(status)
        return {"error": {"message": message, "type": kind, "param": None, "code": None}}

    def too_long_document(self) -> dict[str, Any]:
        document = self.error_document(400, self.too_long_message)
        document["error"] |= {"param": "messages", "code": "context_length_exceeded"}
        return document

    def document(self, reply: Reply) -> dict[str, Any]:
        return {
            "id": _chat_id(reply),
            "object": "chat.completion",
            "created": reply.created,
            "model": reply.model,
            "choices": [
                {
                    "index": index,
                    "message": _message(reply),
                    "finish_reason": _finish(reply),
                    "logprobs": _logprobs(reply.pieces()) if reply.logprobs else None,
                }
                for index in range(reply.choices)
            ],
            "usage": _usage(reply),
        }

    def frames(self, reply: Reply) -> Frames:
        """Every answer's pieces interleaved, as OpenAI streams ``n`` > 1 answers."""
        answers = range(reply.choices)
        preamble = [_chunk(reply, {"role": "assistant", "content": ""}, choice=i)
                    for i in answers]
        body = [_chunk(reply, {"content": piece}, logprobs=_logprobs([piece]) if reply.logprobs
                       else None, choice=i) for piece in reply.pieces() for i in answers]
        if reply.refusal:
            body += [_chunk(reply, {"refusal": reply.refusal}, choice=i) for i in answers]
        for index, call in enumerate(reply.tool_calls):
            for i in answers:
                body += _call_chunks(reply, index, call, i)
        epilogue = [_chunk(reply, {}, _finish(reply), choice=i) for i in answers]
        if reply.include_usage:
            epilogue.append(_chunk_document(reply, [], usage=_usage(reply)))
        epilogue.append(_DONE)
        return preamble, body, epilogue


def _message(reply: Reply) -> dict[str, Any]:
    if reply.refusal:
        return {"role": "assistant", "content": None, "refusal": reply.refusal}
    if not reply.tool_calls:
        return {"role": "assistant", "content": reply.content}
    calls = [{"id": c.id, "type": "function",
              "function": {"name": c.name, "arguments": c.arguments_json}}
             for c in reply.tool_calls]
    return {"role": "assistant", "content": reply.content or None, "tool_calls": calls}


def _logprobs(pieces: list[str]) -> dict[str, Any]:
    """A made-up log probability for each word, in OpenAI's shape."""
    tokens = [{"token": p, "logprob": -0.25, "bytes": list(p.encode()), "top_logprobs": []}
              for p in pieces]
    return {"content": tokens, "refusal": None}


def _finish(reply: Reply) -> str:
    return "tool_calls" if reply.tool_calls else "stop"


def _call_chunks(reply: Reply, index: int, call: FakeCall, choice: int) -> list[bytes]:
    """A streamed call as OpenAI sends it: id and name first, then the arguments in pieces."""
    first = {"index": index, "id": call.id, "type": "function",
             "function": {"name": call.name, "arguments": ""}}
    chunks = [_chunk(reply, {"tool_calls": [first]}, choice=choice)]
    for piece in call.argument_pieces():
        chunks.append(_chunk(reply, {"tool_calls": [{"index": index,
                                                     "function": {"arguments": piece}}]},
                             choice=choice))
    return chunks


def _chat_id(reply: Reply) -> str:
    return f"chatcmpl-fake-{reply.number}"


def _usage(reply: Reply) -> dict[str, int]:
    p, c = reply.prompt_tokens, reply.completion_tokens
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _chunk(reply: Reply, delta: dict[str, Any], finish: str | None = None,
           logprobs: dict[str, Any] | None = None, choice: int = 0) -> bytes:
    choice_doc = {"index": choice, "delta": delta, "finish_reason": finish}
    if logprobs is not None:
        choice_doc["logprobs"] = logprobs
    return _chunk_document(reply, [choice_doc])


def _chunk_document(reply: Reply, choices: list[dict[str, Any]], **extra: Any) -> bytes:
    return sse(
        {
            "id": _chat_id(reply),
            "object": "chat.completion.chunk",
            "created": reply.created,
            "model": reply.model,
            "choices": choices,
            **extra,
        }
    )
