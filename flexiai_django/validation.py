"""Parse and validate an OpenAI chat-completions request body. Pure: bytes in, request out.

Every rejection names the parameter and says what is wrong, in OpenAI's terms, so the
official SDK raises its usual ``BadRequestError`` with a useful message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

from flexiai_django.chat_types import ChatRequest, Message

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
MAX_STOP_SEQUENCES = 4


@dataclass(frozen=True)
class APIRequest:
    chat: ChatRequest
    stream: bool
    include_usage: bool = False


class InvalidRequest(ValueError):
    """Turns into an OpenAI-style error body with this status."""

    def __init__(self, message: str, *, param: str | None = None, code: str = "invalid_value",
                 status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.status = status

    def as_body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": "invalid_request_error",
                          "param": self.param, "code": self.code}}


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _bounded_number(body: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if not _is_number(value) or not low <= value <= high:
        raise InvalidRequest(f"'{name}' must be a number from {low:g} to {high:g}.", param=name)
    return float(value)


def _text(content: Any, where: str) -> str:
    """A message's content: a string, or OpenAI's list of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for i, part in enumerate(content):
            if not (isinstance(part, dict) and part.get("type") == "text"
                    and isinstance(part.get("text"), str)):
                raise InvalidRequest(f"'{where}.content[{i}]' must be a text part "
                                     '({"type": "text", "text": "..."}).', param=where)
            parts.append(part["text"])
        return "".join(parts)
    raise InvalidRequest(f"'{where}.content' must be a string or a list of text parts.",
                         param=where)


def _messages(value: Any, limit: int) -> tuple[Message, ...]:
    if value is None:
        raise InvalidRequest("'messages' is required.", param="messages",
                             code="missing_required_parameter")
    if not isinstance(value, list) or not value:
        raise InvalidRequest("'messages' must be a non-empty array.", param="messages")
    if len(value) > limit:
        raise InvalidRequest(f"'messages' may hold at most {limit} messages; got {len(value)}.",
                             param="messages", code="too_many_messages")
    messages = []
    for i, item in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"'{where}' must be an object.", param=where)
        role = item.get("role")
        if role not in ROLES:
            raise InvalidRequest(f"'{where}.role' must be one of {', '.join(sorted(ROLES))}; "
                                 f"got {role!r}.", param=f"{where}.role")
        content = item.get("content")
        if content is None and role == "assistant":
            content = ""
        messages.append(Message(str(role), _text(content, where)))
    return tuple(messages)


def _stop(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    stops = [value] if isinstance(value, str) else value
    if (not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)
            or len(stops) > MAX_STOP_SEQUENCES):
        raise InvalidRequest(f"'stop' must be a string or up to {MAX_STOP_SEQUENCES} strings.",
                             param="stop")
    return tuple(stops) or None


def parse(body: bytes, *, max_tokens_limit: int = 128_000,
          max_messages: int = 1000) -> APIRequest:
    """Validate a request body; raises :class:`InvalidRequest`."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The body is not valid JSON ({exc.msg}).", code="invalid_json",
                             param=None) from None
    if not isinstance(data, dict):
        raise InvalidRequest("The body must be a JSON object.", code="invalid_json")
    model = data.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise InvalidRequest("'model' must be a non-empty string.", param="model")
    max_tokens = data.get("max_tokens", data.get("max_completion_tokens"))
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)
                                   or not 1 <= max_tokens <= max_tokens_limit):
        raise InvalidRequest(f"'max_tokens' must be an integer from 1 to {max_tokens_limit}.",
                             param="max_tokens")
    stream = data.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be true or false.", param="stream")
    n = data.get("n", 1)
    if n != 1 or isinstance(n, bool):
        raise InvalidRequest("Only 'n': 1 is supported.", param="n", code="unsupported_value")
    user = data.get("user")
    if user is not None and not isinstance(user, str):
        raise InvalidRequest("'user' must be a string.", param="user")
    options = data.get("stream_options") or {}
    if not isinstance(options, dict):
        raise InvalidRequest("'stream_options' must be an object.", param="stream_options")
    chat = ChatRequest(
        messages=_messages(data.get("messages"), max_messages),
        model=model,
        temperature=_bounded_number(data, "temperature", 0, 2),
        max_tokens=max_tokens,
        top_p=_bounded_number(data, "top_p", 0, 1),
        stop=_stop(data.get("stop")),
        user=user,
    )
    return APIRequest(chat, stream, bool(options.get("include_usage")))
