"""The one interface every API format of the fake upstream implements, and what they share.

The server reads a request, picks its fault and writes bytes; everything that depends on
which API is spoken (the endpoint, auth header, request fields, reply, stream and error
shapes, broken bodies) sits behind ``ApiFormat``. Teaching the fake something new about
one API touches that API's module only.

Tools, the same way in every format: a request that offers tools (and does not turn them
off) gets a call to the first one, or to the one ``tool_choice`` forces, with arguments
``{"text": <last user text>}``; a request whose last message is a tool result gets the
answer ``<prefix>tool said: <result>``. So an agent loop (call → result → answer) runs
against the fake with any client.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import re
import time
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

Api = Literal["openai", "anthropic", "ollama"]

# A stream as (preamble, one frame per content piece, epilogue): the server can fail or
# slow down between pieces without knowing the format.
Frames = tuple[list[bytes], list[bytes], list[bytes]]

COMMON_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}

_WORD = re.compile(r"\s*\S+\s*")


@dataclasses.dataclass(frozen=True)
class FakeCall:
    """A tool call the fake makes: the id is the format's own kind of id."""

    id: str
    name: str
    arguments: dict[str, Any]

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.arguments)

    def argument_pieces(self) -> list[str]:
        """The arguments' JSON in two pieces, as real APIs stream them in several."""
        text = self.arguments_json
        return [text[: len(text) // 2], text[len(text) // 2:]]


@dataclasses.dataclass(frozen=True)
class Reply:
    """A deterministic answer to one request, before a format renders it whole or streamed."""

    model: str
    content: str
    prompt_tokens: int
    number: int
    include_usage: bool = False
    tool_calls: tuple[FakeCall, ...] = ()
    refusal: str | None = None
    #: The request asked for log probabilities (OpenAI): each word gets one.
    logprobs: bool = False
    #: How many answers the request asked for (OpenAI's ``n``); each is the same.
    choices: int = 1

    def refused(self) -> Reply:
        """This reply as a refusal: no content, no tool call."""
        return dataclasses.replace(self, content="", tool_calls=(),
                                   refusal="I can't help with that.")

    @property
    def completion_tokens(self) -> int:
        return len(self.content.split()) + sum(len(c.arguments_json.split())
                                               for c in self.tool_calls)

    @property
    def created(self) -> int:
        return int(time.time())

    def pieces(self) -> list[str]:
        """One piece per word with its trailing whitespace; joining them gives the content."""
        pieces = _WORD.findall(self.content)
        return pieces or ([self.content] if self.content else [])


class ApiFormat(abc.ABC):
    """How one API is spoken: its endpoint, its request fields and its documents."""

    name: ClassVar[Api]
    path: ClassVar[str]
    """Endpoint path after the scope, e.g. ``/v1/chat/completions``."""
    base_path: ClassVar[str] = ""
    """What a client's base URL adds after the scope (the SDK appends the rest)."""
    stream_by_default: ClassVar[bool] = False
    stream_content_type: ClassVar[str] = "text/event-stream"
    malformed_body: ClassVar[bytes]
    malformed_frames: ClassVar[tuple[bytes, ...]]

    # -- requests

    call_id_prefix: ClassVar[str] = "call_fake_"

    def reply(self, payload: Mapping[str, Any], prefix: str, number: int) -> Reply:
        """The answer to ``payload``: ``prefix`` plus the last user message, echoed; a tool
        call when tools are offered; what the tool said after a tool result."""
        options, n = payload.get("stream_options"), payload.get("n")
        result = self.tool_result(payload)
        tool = self.tool_to_call(payload) if result is None else None
        calls: tuple[FakeCall, ...] = ()
        if result is not None:
            content = f"{prefix}tool said: {result}"
        elif tool is not None:
            content = ""
            calls = (FakeCall(f"{self.call_id_prefix}{number}", tool,
                              {"text": last_user_text(payload)}),)
        else:
            content = continued(payload, prefix)
        return Reply(
            model=str(payload.get("model", "")),
            content=content,
            prompt_tokens=prompt_tokens(payload),
            number=number,
            include_usage=isinstance(options, dict) and bool(options.get("include_usage")),
            tool_calls=calls,
            logprobs=payload.get("logprobs") is True,
            choices=n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1,
        )

    def tool_result(self, payload: Mapping[str, Any]) -> str | None:
        """The text of the tool result the request ends with, if it ends with one."""
        message = last_message(payload)
        if message.get("role") == "tool":
            return text_of(message.get("content"))
        return None

    def tool_to_call(self, payload: Mapping[str, Any]) -> str | None:
        """The tool this request makes the model call (OpenAI's and Ollama's shapes)."""
        names = [t["function"].get("name") for t in payload.get("tools") or ()
                 if isinstance(t, dict) and isinstance(t.get("function"), dict)]
        choice = payload.get("tool_choice")
        if not names or choice == "none":
            return None
        if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
            return str(choice["function"].get("name"))
        return str(names[0])

    def wants_stream(self, payload: Mapping[str, Any]) -> bool:
        return bool(payload.get("stream", self.stream_by_default))

    def authorized(self, headers: Mapping[str, str], key: str) -> bool:
        return headers.get("authorization") == f"Bearer {key}"

    # -- documents

    def error_type(self, status: int) -> str:
        fallback = "server_error" if status >= 500 else "invalid_request_error"
        return COMMON_ERROR_TYPES.get(status) or fallback

    @abc.abstractmethod
    def error_document(self, status: int, message: str) -> dict[str, Any]:
        """The body of an error response with ``status``."""

    #: How this API says a prompt is longer than the model's context window.
    too_long_message: ClassVar[str] = (
        "This model's maximum context length is 4096 tokens; your messages are longer.")

    def too_long_document(self) -> dict[str, Any]:
        """The 400 body refusing a prompt longer than the context window."""
        return self.error_document(400, self.too_long_message)

    @abc.abstractmethod
    def document(self, reply: Reply) -> dict[str, Any]:
        """The whole (non-streamed) reply."""

    @abc.abstractmethod
    def frames(self, reply: Reply) -> Frames:
        """The streamed reply, as frames ready to send."""


def text_of(content: Any) -> str:
    """A message's text, whether a plain string or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        return " ".join(p for p in parts if isinstance(p, str))
    return ""


def last_message(payload: Mapping[str, Any]) -> dict[str, Any]:
    messages = payload.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        return messages[-1]
    return {}


def last_user_text(payload: Mapping[str, Any]) -> str:
    messages = payload.get("messages")
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                return text_of(message.get("content"))
    return ""


def continued(payload: Mapping[str, Any], prefix: str) -> str:
    """The echo answer, or the rest of it when the request continues a cut-off one.

    An assistant prefill that begins the echo gets the rest of it; a request ending with
    [the cut-off answer, an instruction to continue] gets the rest with the cut-off
    answer's last word repeated first, as models do (the seam overlap a gateway drops).
    A whole earlier answer is a conversation, not a cut-off one: answered as usual.
    """
    messages = [m for m in payload.get("messages") or () if isinstance(m, dict)]
    last = messages[-1] if messages else {}
    if last.get("role") == "assistant":
        partial = text_of(last.get("content"))
        whole = prefix + last_user_text(payload)
        return whole[len(partial):] if partial and whole.startswith(partial) else whole
    if len(messages) >= 3 and messages[-2].get("role") == "assistant":
        partial = text_of(messages[-2].get("content"))
        earlier = {**payload, "messages": messages[:-2]}
        whole = prefix + last_user_text(earlier)
        if partial and whole.startswith(partial) and len(whole) > len(partial):
            words = _WORD.findall(partial)
            return (words[-1] if words else "") + whole[len(partial):]
    return prefix + last_user_text(payload)


def prompt_tokens(payload: Mapping[str, Any]) -> int:
    """Words in the system prompt and all messages: a stand-in for a tokenizer."""
    words = len(text_of(payload.get("system")).split())
    messages = payload.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                words += len(text_of(message.get("content")).split())
    return words


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event; ``data`` is JSON-encoded unless already a string."""
    text = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {text}\n\n".encode()
