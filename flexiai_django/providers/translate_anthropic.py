"""OpenAI's chat request and answer ↔ Anthropic's messages API, both ways. Pure.

* ``system`` and ``developer`` turns become the ``system`` prompt;
* content parts become text and ``image`` blocks (base64 for data URLs, ``url`` otherwise);
* an assistant turn's ``tool_calls`` become ``tool_use`` blocks, ``tool`` turns become
  ``tool_result`` blocks in a user turn (consecutive turns of one role are merged, as
  Anthropic wants tool results together right after the call);
* tools ↔ ``tools`` with ``input_schema``; ``tool_choice`` and ``parallel_tool_calls``
  ↔ ``tool_choice`` with ``disable_parallel_tool_use``;
* JSON mode: ``json_object`` is an instruction in the system prompt; ``json_schema`` is a
  forced tool whose input is the answer (:data:`JSON_TOOL`), turned back into text;
* answers: ``tool_use`` blocks → tool calls, ``stop_reason`` → ``finish_reason``;
  :class:`StreamTranslator` turns the event stream (``input_json_delta`` included) into
  OpenAI's incremental deltas.

Tool-call ids are kept (made safe for Anthropic's id pattern), so a conversation that
started on an OpenAI-kind provider continues here, and the reverse.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from flexiai_django.chat_types import (
    ChatRequest,
    Completion,
    ImagePart,
    Message,
    StreamDelta,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
)

from .sse import ErrorEvent

DEFAULT_MAX_TOKENS = 1024
#: The forced tool that carries a ``json_schema`` answer.
JSON_TOOL = "json_response"
JSON_INSTRUCTION = ("Reply with a single valid JSON object and nothing else: no prose, "
                    "no code fences.")
FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
          "tool_use": "tool_calls", "refusal": "content_filter", "pause_turn": "stop",
          "model_context_window_exceeded": "length"}
_UNSAFE_ID = re.compile(r"[^a-zA-Z0-9_-]")


def safe_id(call_id: str) -> str:
    """An id Anthropic accepts (``^[a-zA-Z0-9_-]+$``), the same for a call and its result."""
    return _UNSAFE_ID.sub("_", call_id) or "call"


def finish_reason(stop_reason: str | None) -> str | None:
    return FINISH.get(stop_reason or "", stop_reason)


def _image(part: ImagePart) -> dict[str, Any]:
    data = part.data
    if data is not None:
        media_type, payload = data
        return {"type": "image",
                "source": {"type": "base64", "media_type": media_type, "data": payload}}
    return {"type": "image", "source": {"type": "url", "url": part.url}}


def _arguments(text: str) -> dict[str, Any]:
    """Anthropic wants the input as an object; OpenAI's arguments are JSON text."""
    try:
        value = orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        return {"arguments": text}
    return value if isinstance(value, dict) else {"value": value}


def _blocks(m: Message) -> list[dict[str, Any]]:
    if m.role == "tool":
        return [{"type": "tool_result", "tool_use_id": safe_id(m.tool_call_id or ""),
                 "content": m.content}]
    blocks: list[dict[str, Any]] = []
    if m.parts:
        for part in m.parts:
            if isinstance(part, ImagePart):
                blocks.append(_image(part))
            elif isinstance(part, TextPart) and part.text:
                blocks.append({"type": "text", "text": part.text})
    elif m.content:
        blocks.append({"type": "text", "text": m.content})
    blocks += [{"type": "tool_use", "id": safe_id(c.id), "name": c.name,
                "input": _arguments(c.arguments)} for c in m.tool_calls]
    return blocks


def messages(request: ChatRequest) -> list[dict[str, Any]]:
    """The turns after the system prompt, one role at a time, tool results first."""
    turns: list[dict[str, Any]] = []
    for m in request.messages:
        if m.role in ("system", "developer"):
            continue
        role = "assistant" if m.role == "assistant" else "user"
        blocks = _blocks(m)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += blocks
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:  # Anthropic wants a user turn's tool results before its text
        turn["content"].sort(key=lambda b: b["type"] != "tool_result")
    return turns


def system_prompt(request: ChatRequest) -> str:
    parts = [m.content for m in request.messages if m.role in ("system", "developer")]
    fmt = request.response_format
    if fmt is not None and (fmt.type == "json_object"
                            or (fmt.type == "json_schema" and request.tools)):
        instruction = JSON_INSTRUCTION
        if fmt.type == "json_schema":
            instruction += " It must match this JSON Schema: " + orjson.dumps(
                dict(fmt.schema)).decode()
        parts.append(instruction)
    return "\n\n".join(p for p in parts if p)


def json_tool(request: ChatRequest) -> bool:
    """Is the answer's schema enforced through the forced :data:`JSON_TOOL`?"""
    fmt = request.response_format
    return fmt is not None and fmt.type == "json_schema" and not request.tools


def _tools(request: ChatRequest) -> list[dict[str, Any]]:
    if json_tool(request):
        assert request.response_format is not None
        return [{"name": JSON_TOOL, "description": "Give the answer as this tool's input.",
                 "input_schema": dict(request.response_format.schema)}]
    tools = []
    for tool in request.tools:
        spec: dict[str, Any] = {"name": tool.name,
                                "input_schema": dict(tool.parameters or {"type": "object"})}
        if tool.description:
            spec["description"] = tool.description
        tools.append(spec)
    return tools


def _tool_choice(request: ChatRequest) -> dict[str, Any] | None:
    if json_tool(request):
        return {"type": "tool", "name": JSON_TOOL}
    choice = request.tool_choice
    mode = choice.mode if choice is not None else None
    wanted: dict[str, Any] | None = {
        None: None, "auto": {"type": "auto"}, "none": {"type": "none"},
        "required": {"type": "any"},
        "function": {"type": "tool", "name": choice.name if choice else None},
    }[mode]
    if request.parallel_tool_calls is False and request.tools and mode != "none":
        wanted = {**(wanted or {"type": "auto"}), "disable_parallel_tool_use": True}
    return wanted


def payload(request: ChatRequest, model: str, *, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": request.token_limit or DEFAULT_MAX_TOKENS,
        "messages": messages(request),
        "stream": stream,
    }
    system = system_prompt(request)
    if system:
        body["system"] = system
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    tools = _tools(request)
    if tools:
        body["tools"] = tools
        choice = _tool_choice(request)
        if choice is not None:
            body["tool_choice"] = choice
    if request.user:
        body["metadata"] = {"user_id": request.user}
    return body


def _usage(data: Any) -> Usage:
    return Usage(int(data.get("input_tokens") or 0), int(data.get("output_tokens") or 0))


def completion(data: Any, fallback_model: str, json_answer: bool) -> Completion:
    """A whole reply; KeyError/TypeError when malformed. ``json_answer``: the request
    asked for a ``json_schema`` answer through :data:`JSON_TOOL`."""
    text, calls = [], []
    for block in data["content"]:
        kind = block.get("type")
        if kind == "text":
            text.append(str(block["text"]))
        elif kind == "tool_use" and json_answer and block["name"] == JSON_TOOL:
            text.append(orjson.dumps(block["input"]).decode())
        elif kind == "tool_use":
            calls.append(ToolCall(str(block["id"]), str(block["name"]),
                                  orjson.dumps(block["input"]).decode()))
    reason = finish_reason(data.get("stop_reason"))
    if json_answer and reason == "tool_calls" and not calls:
        reason = "stop"
    return Completion(content="".join(text), model=str(data.get("model") or fallback_model),
                      finish_reason=reason, usage=_usage(data.get("usage") or {}),
                      tool_calls=tuple(calls))


class StreamTranslator:
    """One stream's events → deltas. Stateful: a block's deltas name only its index, so
    it remembers which blocks are tool calls (and which is the JSON answer)."""

    def __init__(self, json_answer: bool) -> None:
        self.json_answer = json_answer
        self.calls: dict[int, int] = {}  # block index -> tool-call index
        self.answers: set[int] = set()  # block indexes carrying the JSON answer as input

    def __call__(self, event: str | None, data: str) -> StreamDelta | None:
        payload = orjson.loads(data)
        kind = payload.get("type", event)
        if kind == "content_block_start":
            return self._start(int(payload["index"]), payload["content_block"])
        if kind == "content_block_delta":
            return self._delta(int(payload["index"]), payload["delta"])
        if kind == "message_start":
            message = payload.get("message") or {}
            usage = message.get("usage") or {}
            return StreamDelta(model=message.get("model"),
                               usage=Usage(int(usage.get("input_tokens") or 0), 0))
        if kind == "message_delta":
            reason = finish_reason((payload.get("delta") or {}).get("stop_reason"))
            if self.answers and reason == "tool_calls" and not self.calls:
                reason = "stop"
            output = int((payload.get("usage") or {}).get("output_tokens") or 0)
            return StreamDelta(finish_reason=reason, usage=Usage(0, output))
        if kind == "message_stop":
            return StreamDelta(final=True)
        if kind == "error":
            raise ErrorEvent("error event in stream")
        return None

    def _start(self, index: int, block: Any) -> StreamDelta | None:
        if block.get("type") != "tool_use":
            return None
        if self.json_answer and block.get("name") == JSON_TOOL:
            self.answers.add(index)
            return None
        self.calls[index] = len(self.calls)
        return StreamDelta(tool_calls=(ToolCallDelta(self.calls[index], str(block["id"]),
                                                     str(block["name"])),))

    def _delta(self, index: int, delta: Any) -> StreamDelta | None:
        kind = delta.get("type")
        if kind == "text_delta":
            return StreamDelta(content=str(delta.get("text", "")))
        if kind == "input_json_delta":
            piece = str(delta.get("partial_json", ""))
            if index in self.answers:
                return StreamDelta(content=piece) if piece else None
            if index in self.calls and piece:
                return StreamDelta(tool_calls=(ToolCallDelta(self.calls[index],
                                                             arguments=piece),))
        return None
