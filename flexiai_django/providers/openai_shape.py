"""The provider-neutral request and answer in OpenAI's chat-completions shapes. Pure.

Used by the OpenAI adapter (which sends requests as the caller sent them) and by the
Ollama adapter (whose tool definitions are OpenAI's).
"""

from __future__ import annotations

from typing import Any

import orjson

from flexiai_django.chat_types import (
    ChatRequest,
    ImagePart,
    Message,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
)


def content_parts(message: Message) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            image = {"url": part.url}
            if part.detail:
                image["detail"] = part.detail
            parts.append({"type": "image_url", "image_url": image})
    return parts


def tool_call(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function",
            "function": {"name": call.name, "arguments": call.arguments}}


def message(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role,
                           "content": content_parts(m) if m.parts else m.content}
    if m.tool_calls:
        out["tool_calls"] = [tool_call(c) for c in m.tool_calls]
        if not m.content:
            out["content"] = None
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    if m.name is not None:
        out["name"] = m.name
    return out


def tool(t: Tool) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": t.name}
    if t.description is not None:
        fn["description"] = t.description
    if t.parameters is not None:
        fn["parameters"] = t.parameters
    if t.strict is not None:
        fn["strict"] = t.strict
    return {"type": "function", "function": fn}


def options(request: ChatRequest) -> dict[str, Any]:
    """Every optional field the request sets, named and shaped as OpenAI's API takes it."""
    body: dict[str, Any] = {}
    for name in ("temperature", "max_tokens", "max_completion_tokens", "top_p", "user", "seed",
                 "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs",
                 "parallel_tool_calls"):
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    if request.stop:
        body["stop"] = list(request.stop)
    if request.n != 1:
        body["n"] = request.n
    if request.logit_bias is not None:
        body["logit_bias"] = dict(request.logit_bias)
    if request.metadata is not None:
        body["metadata"] = dict(request.metadata)
    if request.tools:
        body["tools"] = [tool(t) for t in request.tools]
    if request.tool_choice is not None:
        choice = request.tool_choice
        body["tool_choice"] = ({"type": "function", "function": {"name": choice.name}}
                               if choice.mode == "function" else choice.mode)
    if request.response_format is not None:
        fmt: dict[str, Any] = {"type": request.response_format.type}
        if request.response_format.json_schema is not None:
            fmt["json_schema"] = dict(request.response_format.json_schema)
        body["response_format"] = fmt
    return body


def parse_tool_calls(value: Any) -> tuple[ToolCall, ...]:
    """An answer's ``tool_calls``; KeyError/TypeError when malformed."""
    calls = []
    for item in value or ():
        fn = item["function"]
        arguments = fn.get("arguments")
        if not isinstance(arguments, str):
            arguments = "{}" if arguments is None else orjson.dumps(arguments).decode()
        calls.append(ToolCall(str(item["id"]), str(fn["name"]), arguments))
    return tuple(calls)


def parse_tool_call_deltas(value: Any) -> tuple[ToolCallDelta, ...]:
    """A stream chunk's ``delta.tool_calls``; KeyError/TypeError when malformed."""
    deltas = []
    for item in value or ():
        fn = item.get("function") or {}
        name = fn.get("name")
        deltas.append(ToolCallDelta(int(item["index"]), item.get("id"),
                                    str(name) if name is not None else None,
                                    str(fn.get("arguments") or "")))
    return tuple(deltas)


def tool_call_delta(delta: ToolCallDelta) -> dict[str, Any]:
    """One streamed tool-call piece as OpenAI sends it in ``delta.tool_calls``."""
    fn: dict[str, Any] = {"arguments": delta.arguments}
    out: dict[str, Any] = {"index": delta.index}
    if delta.id is not None:
        out["id"] = delta.id
        out["type"] = "function"
    if delta.name is not None:
        fn["name"] = delta.name
    out["function"] = fn
    return out



def whole_call_delta(index: int, call: ToolCall) -> ToolCallDelta:
    """A call that arrived whole (Ollama), as the one piece of its stream."""
    return ToolCallDelta(index, call.id, call.name, call.arguments)
