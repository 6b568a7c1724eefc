"""Parse and validate an OpenAI chat-completions request body. Pure: bytes in, request out.

Every rejection names the parameter and says what is wrong, in OpenAI's terms, so the
official SDK raises its usual ``BadRequestError`` with a useful message. Messages (roles,
content parts, tool calls and results) are parsed in :mod:`flexiai_django.message_parsing`;
this module does the body and its options.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from flexiai_django.chat_types import ChatRequest, ResponseFormat, Tool, ToolChoice
from flexiai_django.message_parsing import ROLES, parse_messages
from flexiai_django.request_errors import InvalidRequest

__all__ = ["ROLES", "APIRequest", "InvalidRequest", "chat_request", "from_dict", "parse"]

MAX_STOP_SEQUENCES = 4
MAX_TOOLS = 128
MAX_METADATA = 16
MAX_TOP_LOGPROBS = 20
MAX_CHOICES = 128
TOOL_CHOICES = ("none", "auto", "required")
RESPONSE_FORMATS = ("text", "json_object", "json_schema")


@dataclass(frozen=True)
class APIRequest:
    chat: ChatRequest
    stream: bool
    include_usage: bool = False


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _bounded_number(body: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if not _is_number(value) or not low <= value <= high:
        raise InvalidRequest(f"'{name}' must be a number from {low:g} to {high:g}.", param=name)
    return float(value)


def _bounded_int(body: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not _is_int(value) or not low <= value <= high:
        raise InvalidRequest(f"'{name}' must be an integer from {low} to {high}.", param=name)
    return int(value)


def _optional(body: dict[str, Any], name: str, kind: type, what: str) -> Any:
    value = body.get(name)
    if value is not None and (not isinstance(value, kind)
                              or (isinstance(value, bool) and kind is not bool)):
        raise InvalidRequest(f"'{name}' must be {what}.", param=name)
    return value


def _stop(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    stops = [value] if isinstance(value, str) else value
    if (not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)
            or len(stops) > MAX_STOP_SEQUENCES):
        raise InvalidRequest(f"'stop' must be a string or up to {MAX_STOP_SEQUENCES} strings.",
                             param="stop")
    return tuple(stops) or None


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 64 or not all(
            c.isascii() and (c.isalnum() or c in "_-") for c in value):
        raise InvalidRequest(f"'{where}' must be 1 to 64 letters, digits, '_' or '-'.",
                             param=where)
    return value


def _tools(value: Any) -> tuple[Tool, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_TOOLS:
        raise InvalidRequest(f"'tools' must be an array of at most {MAX_TOOLS} tools.",
                             param="tools")
    tools = []
    for i, item in enumerate(value):
        where = f"tools[{i}]"
        if not isinstance(item, dict) or item.get("type") != "function" or not isinstance(
                item.get("function"), dict):
            raise InvalidRequest(f"'{where}' must be {{\"type\": \"function\", \"function\": "
                                 "{...}}.", param=where)
        fn = item["function"]
        description = fn.get("description")
        parameters = fn.get("parameters")
        strict = fn.get("strict")
        if description is not None and not isinstance(description, str):
            raise InvalidRequest(f"'{where}.function.description' must be a string.",
                                 param=f"{where}.function.description")
        if parameters is not None and not isinstance(parameters, dict):
            raise InvalidRequest(f"'{where}.function.parameters' must be a JSON Schema object.",
                                 param=f"{where}.function.parameters")
        if strict is not None and not isinstance(strict, bool):
            raise InvalidRequest(f"'{where}.function.strict' must be true or false.",
                                 param=f"{where}.function.strict")
        tools.append(Tool(_name(fn.get("name"), f"{where}.function.name"), description,
                          parameters, strict))
    names = [t.name for t in tools]
    if len(set(names)) != len(names):
        raise InvalidRequest("'tools' must not name the same function twice.", param="tools")
    return tuple(tools)


def _tool_choice(value: Any, tools: tuple[Tool, ...]) -> ToolChoice | None:
    if value is None:
        return None
    if isinstance(value, str) and value in TOOL_CHOICES:
        choice = ToolChoice(value)
    elif (isinstance(value, dict) and value.get("type") == "function"
          and isinstance(value.get("function"), dict)):
        choice = ToolChoice("function", _name(value["function"].get("name"),
                                              "tool_choice.function.name"))
    else:
        raise InvalidRequest("'tool_choice' must be 'none', 'auto', 'required' or "
                             '{"type": "function", "function": {"name": "..."}}.',
                             param="tool_choice")
    if choice.mode in ("required", "function") and not tools:
        raise InvalidRequest(f"'tool_choice' is '{choice.mode}' but no 'tools' were given.",
                             param="tool_choice")
    if choice.name is not None and choice.name not in {t.name for t in tools}:
        raise InvalidRequest(f"'tool_choice' names '{choice.name}', which is not in 'tools'.",
                             param="tool_choice")
    return choice


def _response_format(value: Any) -> ResponseFormat | None:
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("type") not in RESPONSE_FORMATS:
        raise InvalidRequest("'response_format.type' must be one of "
                             f"{', '.join(RESPONSE_FORMATS)}.", param="response_format")
    kind = str(value["type"])
    if kind != "json_schema":
        return ResponseFormat(kind)
    schema = value.get("json_schema")
    if not isinstance(schema, dict) or not isinstance(schema.get("schema", {}), dict):
        raise InvalidRequest("'response_format.json_schema' must be an object with a "
                             "'name' and a 'schema' object.", param="response_format")
    _name(schema.get("name"), "response_format.json_schema.name")
    return ResponseFormat(kind, schema)


def _logit_bias(value: Any) -> Mapping[str, float] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
            k.isdigit() and _is_number(v) and -100 <= v <= 100 for k, v in value.items()):
        raise InvalidRequest("'logit_bias' must map token ids to numbers from -100 to 100.",
                             param="logit_bias")
    return value


def _metadata(value: Any) -> Mapping[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > MAX_METADATA or not all(
            isinstance(v, str) and len(k) <= 64 and len(v) <= 512 for k, v in value.items()):
        raise InvalidRequest(f"'metadata' must map up to {MAX_METADATA} keys to strings.",
                             param="metadata")
    return value


def _token_limit(data: dict[str, Any], name: str, limit: int) -> int | None:
    value = data.get(name)
    if value is not None and (not _is_int(value) or not 1 <= value <= limit):
        raise InvalidRequest(f"'{name}' must be an integer from 1 to {limit}.", param=name)
    return value


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
    return from_dict(data, max_tokens_limit=max_tokens_limit, max_messages=max_messages)


#: Python callers are not held to the HTTP API's limits.
_NO_LIMIT = 2**31 - 1


def chat_request(messages: Any, **params: Any) -> ChatRequest:
    """The request ``chat()``, ``stream()`` and ``llm()`` send, checked as the HTTP API
    checks a body.

    ``messages``: a prompt string, or a list of OpenAI-style message dicts and
    :class:`~flexiai_django.chat_types.Message` objects. ``params`` take OpenAI's names and
    shapes (``tools`` as a list of ``{"type": "function", ...}`` dicts, ``tool_choice``,
    ``response_format``...), plus ``cache_scope`` and ``include_usage``. Raises
    ``TypeError`` for a misspelt keyword and :class:`InvalidRequest` (a ``ValueError``)
    naming a bad value.
    """
    ChatRequest.check_params(params)
    local = {name: params.pop(name) for name in ("cache_scope", "include_usage")
             if name in params}
    if isinstance(params.get("stop"), tuple):
        params["stop"] = list(params["stop"])
    params["messages"] = ([{"role": "user", "content": messages}] if isinstance(messages, str)
                          else list(messages))
    chat = from_dict(params, max_tokens_limit=_NO_LIMIT, max_messages=_NO_LIMIT).chat
    return dataclasses.replace(chat, cache_scope=str(local.get("cache_scope", "")),
                               include_usage=bool(local.get("include_usage", False)))


def from_dict(data: dict[str, Any], *, max_tokens_limit: int,
              max_messages: int) -> APIRequest:
    """Validate a decoded body; raises :class:`InvalidRequest`."""
    model = data.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise InvalidRequest("'model' must be a non-empty string.", param="model")
    stream = data.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be true or false.", param="stream")
    options = data.get("stream_options") or {}
    if not isinstance(options, dict):
        raise InvalidRequest("'stream_options' must be an object.", param="stream_options")
    tools = _tools(data.get("tools"))
    logprobs = _optional(data, "logprobs", bool, "true or false")
    top_logprobs = _bounded_int(data, "top_logprobs", 0, MAX_TOP_LOGPROBS)
    if top_logprobs is not None and not logprobs:
        raise InvalidRequest("'top_logprobs' needs 'logprobs': true.", param="top_logprobs")
    include_usage = bool(options.get("include_usage"))
    chat = ChatRequest(
        messages=parse_messages(data.get("messages"), max_messages),
        model=model,
        temperature=_bounded_number(data, "temperature", 0, 2),
        max_tokens=_token_limit(data, "max_tokens", max_tokens_limit),
        max_completion_tokens=_token_limit(data, "max_completion_tokens", max_tokens_limit),
        top_p=_bounded_number(data, "top_p", 0, 1),
        stop=_stop(data.get("stop")),
        user=_optional(data, "user", str, "a string"),
        tools=tools,
        tool_choice=_tool_choice(data.get("tool_choice"), tools),
        parallel_tool_calls=_optional(data, "parallel_tool_calls", bool, "true or false"),
        response_format=_response_format(data.get("response_format")),
        seed=_optional(data, "seed", int, "an integer"),
        presence_penalty=_bounded_number(data, "presence_penalty", -2, 2),
        frequency_penalty=_bounded_number(data, "frequency_penalty", -2, 2),
        logit_bias=_logit_bias(data.get("logit_bias")),
        logprobs=logprobs,
        top_logprobs=top_logprobs,
        metadata=_metadata(data.get("metadata")),
        n=_bounded_int(data, "n", 1, MAX_CHOICES) or 1,
        include_usage=stream and include_usage,
    )
    return APIRequest(chat, stream, include_usage)
