"""OpenAI chat messages → :class:`~flexiai_django.chat_types.Message`. Pure.

Every role OpenAI knows, content as a string or parts (text, ``image_url`` as a URL or a
data URL), assistant turns with ``tool_calls`` and ``tool`` turns answering them. A
rejection names the message and field, e.g. ``messages[2].tool_calls[0].id``.
"""

from __future__ import annotations

from typing import Any

from flexiai_django.chat_types import ContentPart, ImagePart, Message, TextPart, ToolCall
from flexiai_django.request_errors import InvalidRequest

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
IMAGE_DETAILS = ("auto", "low", "high")
#: Roles whose content may hold image parts (OpenAI accepts them from the user only).
IMAGE_ROLES = frozenset({"user"})


def _image(part: dict[str, Any], where: str) -> ImagePart:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else None
    detail = image.get("detail") if isinstance(image, dict) else None
    if not isinstance(url, str) or not url.startswith(("http://", "https://", "data:")):
        raise InvalidRequest(f"'{where}.image_url.url' must be an http(s) URL or a data URL.",
                             param=where)
    if detail is not None and detail not in IMAGE_DETAILS:
        raise InvalidRequest(f"'{where}.image_url.detail' must be one of "
                             f"{', '.join(IMAGE_DETAILS)}.", param=where)
    part_ = ImagePart(url, detail)
    if url.startswith("data:") and part_.data is None:
        raise InvalidRequest(f"'{where}.image_url.url' must be a base64 data URL "
                             "(data:<type>;base64,<data>).", param=where)
    return part_


def _content(content: Any, where: str, role: str) -> tuple[str, tuple[ContentPart, ...]]:
    """The text, and the parts when there is more than text."""
    if isinstance(content, str):
        return content, ()
    if not isinstance(content, list):
        raise InvalidRequest(f"'{where}.content' must be a string or a list of content parts.",
                             param=where)
    parts: list[ContentPart] = []
    for i, part in enumerate(content):
        here = f"{where}.content[{i}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part, dict) and isinstance(part.get("text"), str):
            parts.append(TextPart(part["text"]))
        elif kind == "image_url" and isinstance(part, dict) and role in IMAGE_ROLES:
            parts.append(_image(part, here))
        else:
            allowed = "a text or image_url part" if role in IMAGE_ROLES else "a text part"
            raise InvalidRequest(f"'{here}' must be {allowed} "
                                 '({"type": "text", "text": "..."}).', param=where)
    text = "".join(p.text for p in parts if isinstance(p, TextPart))
    has_image = any(isinstance(p, ImagePart) for p in parts)
    return text, tuple(parts) if has_image else ()


def _tool_calls(value: Any, where: str) -> tuple[ToolCall, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidRequest(f"'{where}.tool_calls' must be an array.", param=where)
    calls = []
    for i, item in enumerate(value):
        here = f"{where}.tool_calls[{i}]"
        fn = item.get("function") if isinstance(item, dict) else None
        if not (isinstance(item, dict) and item.get("type", "function") == "function"
                and isinstance(item.get("id"), str) and item["id"]
                and isinstance(fn, dict) and isinstance(fn.get("name"), str) and fn["name"]
                and isinstance(fn.get("arguments", ""), str)):
            raise InvalidRequest(f"'{here}' must be {{\"id\": \"...\", \"type\": \"function\", "
                                 '"function": {"name": "...", "arguments": "..."}}.',
                                 param=here)
        calls.append(ToolCall(item["id"], fn["name"], fn.get("arguments") or "{}"))
    return tuple(calls)


def _message(item: Any, where: str) -> Message:
    if isinstance(item, Message):  # built in Python by the caller: taken as it is
        return item
    if not isinstance(item, dict):
        raise InvalidRequest(f"'{where}' must be an object.", param=where)
    role = item.get("role")
    if role not in ROLES:
        raise InvalidRequest(f"'{where}.role' must be one of {', '.join(sorted(ROLES))}; "
                             f"got {role!r}.", param=f"{where}.role")
    role = str(role)
    name = item.get("name")
    if name is not None and not isinstance(name, str):
        raise InvalidRequest(f"'{where}.name' must be a string.", param=f"{where}.name")
    content = item.get("content")
    tool_calls = _tool_calls(item.get("tool_calls"), where) if role == "assistant" else ()
    if content is None and role == "assistant":
        content = ""
    text, parts = _content(content, where, role)
    tool_call_id = None
    if role == "tool":
        tool_call_id = item.get("tool_call_id")
        if not isinstance(tool_call_id, str) or not tool_call_id:
            raise InvalidRequest(f"'{where}.tool_call_id' is required for a tool message.",
                                 param=f"{where}.tool_call_id")
    return Message(role, text, parts, tool_calls, tool_call_id, name)


def _check_tool_results(messages: list[Message]) -> None:
    """Every tool message answers a call an earlier assistant turn made, as OpenAI insists."""
    called: set[str] = set()
    for i, message in enumerate(messages):
        called.update(c.id for c in message.tool_calls)
        if message.role == "tool" and message.tool_call_id not in called:
            raise InvalidRequest(f"'messages[{i}]' answers tool call "
                                 f"'{message.tool_call_id}', which no earlier assistant "
                                 "message made.", param=f"messages[{i}].tool_call_id")


def parse_messages(value: Any, limit: int) -> tuple[Message, ...]:
    """The ``messages`` array; raises :class:`InvalidRequest` naming what is wrong."""
    if value is None:
        raise InvalidRequest("'messages' is required.", param="messages",
                             code="missing_required_parameter")
    if not isinstance(value, list) or not value:
        raise InvalidRequest("'messages' must be a non-empty array.", param="messages")
    if len(value) > limit:
        raise InvalidRequest(f"'messages' may hold at most {limit} messages; got {len(value)}.",
                             param="messages", code="too_many_messages")
    messages = [_message(item, f"messages[{i}]") for i, item in enumerate(value)]
    _check_tool_results(messages)
    return tuple(messages)
