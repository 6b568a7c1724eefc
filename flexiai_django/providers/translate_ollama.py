"""OpenAI's chat request and answer ↔ Ollama's ``/api/chat``, both ways. Pure.

``developer`` turns are system turns; images go as base64 in ``images`` (Ollama takes no
URLs); tool calls carry their arguments as objects, tool results name the tool they
answer (``tool_name``, found from the call's id); tools are OpenAI's shape already; JSON
mode is ``format`` (``"json"`` or the schema); seed and penalties are ``options``.
Ollama gives its tool calls no ids, so the answer invents them.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from flexiai_django.chat_types import ChatRequest, Completion, Message, StreamDelta, ToolCall, Usage

from . import openai_shape
from .sse import ErrorEvent

#: tool_choice modes Ollama can honour: "auto" is what it does, "none" sends no tools.
TOOL_CHOICES = ("auto", "none")


def _arguments(text: str) -> Any:
    try:
        return orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        return {"arguments": text}


def _message(m: Message, names: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"role": "system" if m.role == "developer" else m.role,
                           "content": m.content}
    images = [data[1] for data in (image.data for image in m.images) if data is not None]
    if images:
        out["images"] = images
    if m.tool_calls:
        out["tool_calls"] = [{"function": {"name": c.name, "arguments": _arguments(c.arguments)}}
                             for c in m.tool_calls]
    if m.role == "tool" and m.tool_call_id in names:
        out["tool_name"] = names[m.tool_call_id]
    return out


def messages(request: ChatRequest) -> list[dict[str, Any]]:
    names = {c.id: c.name for m in request.messages for c in m.tool_calls}
    return [_message(m, names) for m in request.messages]


def unsupported(request: ChatRequest) -> tuple[str, ...]:
    """What Ollama cannot carry beyond its option list: a forced tool, serial tool calls,
    an image given by URL."""
    missing = []
    if request.tool_choice is not None and request.tool_choice.mode not in TOOL_CHOICES:
        missing.append("tool_choice")
    if request.parallel_tool_calls is False:
        missing.append("parallel_tool_calls")
    if any(image.data is None for m in request.messages for image in m.images):
        missing.append("image_url (an http URL: Ollama takes only data URLs)")
    return tuple(missing)


def payload(request: ChatRequest, model: str, *, stream: bool) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name, key in (("temperature", "temperature"), ("top_p", "top_p"), ("seed", "seed"),
                      ("presence_penalty", "presence_penalty"),
                      ("frequency_penalty", "frequency_penalty")):
        value = getattr(request, name)
        if value is not None:
            options[key] = value
    if request.token_limit is not None:
        options["num_predict"] = request.token_limit
    if request.stop:
        options["stop"] = list(request.stop)
    body: dict[str, Any] = {"model": model, "messages": messages(request), "stream": stream}
    if options:
        body["options"] = options
    if request.tools and not (request.tool_choice and request.tool_choice.mode == "none"):
        body["tools"] = [openai_shape.tool(t) for t in request.tools]
    fmt = request.response_format
    if fmt is not None and fmt.type == "json_object":
        body["format"] = "json"
    elif fmt is not None and fmt.type == "json_schema":
        body["format"] = dict(fmt.schema)
    return body


def tool_calls(message: Any) -> tuple[ToolCall, ...]:
    calls = []
    for item in message.get("tool_calls") or ():
        fn = item["function"]
        arguments = fn.get("arguments")
        text = arguments if isinstance(arguments, str) else orjson.dumps(arguments or {}).decode()
        call_id = item.get("id") or f"call_{uuid.uuid4().hex[:24]}"
        calls.append(ToolCall(str(call_id), str(fn["name"]), text))
    return tuple(calls)


def _finish(data: Any, calls: bool) -> str:
    reason = str(data.get("done_reason") or "stop")
    return "tool_calls" if calls and reason == "stop" else reason


def _usage(data: Any) -> Usage:
    return Usage(int(data.get("prompt_eval_count") or 0), int(data.get("eval_count") or 0))


def completion(data: Any, fallback_model: str) -> Completion:
    if "error" in data:
        raise ValueError("error reply")
    message = data["message"]
    content = message.get("content") or ""
    if not isinstance(content, str):
        raise TypeError("content is not text")
    calls = tool_calls(message)
    return Completion(content=content, model=str(data.get("model") or fallback_model),
                      finish_reason=_finish(data, bool(calls)), usage=_usage(data),
                      tool_calls=calls)


class StreamTranslator:
    """One stream's lines → deltas; numbers the tool calls across lines."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, event: str | None, data: str) -> StreamDelta | None:
        chunk = orjson.loads(data)
        if "error" in chunk:
            raise ErrorEvent("error event in stream")
        message = chunk.get("message") or {}
        content = str(message.get("content") or "")
        deltas = []
        for call in tool_calls(message):
            deltas.append(openai_shape.whole_call_delta(self.calls, call))
            self.calls += 1
        if chunk.get("done"):
            return StreamDelta(content=content, tool_calls=tuple(deltas), final=True,
                               finish_reason=_finish(chunk, self.calls > 0),
                               usage=_usage(chunk))
        return StreamDelta(content=content, model=chunk.get("model"), tool_calls=tuple(deltas))
