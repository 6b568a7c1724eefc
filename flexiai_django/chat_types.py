"""Plain value types shared by adapters, the fallback chain and the public API."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

Tier = Literal["provider", "cache", "degraded"]


@dataclass(frozen=True)
class ImagePart:
    """An ``image_url`` content part: an http(s) URL or a ``data:`` URL, as OpenAI takes it."""

    url: str
    detail: str | None = None

    @property
    def data(self) -> tuple[str, str] | None:
        """``(media_type, base64)`` for a base64 data URL, else None."""
        head, sep, payload = self.url.partition(",")
        if not (sep and head.startswith("data:") and head.endswith(";base64")):
            return None
        return head[len("data:"):-len(";base64")], payload


@dataclass(frozen=True)
class TextPart:
    text: str


ContentPart = TextPart | ImagePart


@dataclass(frozen=True)
class ToolCall:
    """A function call the model asked for; ``arguments`` is JSON text, as OpenAI sends it."""

    id: str
    name: str
    arguments: str = "{}"


@dataclass(frozen=True)
class Message:
    """One turn. ``content`` is its text; ``parts`` is set only when it holds images too.

    An assistant turn may carry ``tool_calls`` (and empty content); a ``tool`` turn
    answers the call named by ``tool_call_id``.
    """

    role: str
    content: str
    parts: tuple[ContentPart, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    @property
    def images(self) -> tuple[ImagePart, ...]:
        return tuple(p for p in self.parts if isinstance(p, ImagePart))


@dataclass(frozen=True)
class Tool:
    """A function the model may call; ``parameters`` is its JSON Schema."""

    name: str
    description: str | None = None
    parameters: Mapping[str, Any] | None = None
    strict: bool | None = None


@dataclass(frozen=True)
class ToolChoice:
    """``mode`` is ``none``, ``auto``, ``required`` or ``function`` (then ``name`` says which)."""

    mode: str
    name: str | None = None


@dataclass(frozen=True)
class ResponseFormat:
    """``type`` is ``text``, ``json_object`` or ``json_schema`` (then ``json_schema`` is
    OpenAI's object: ``name``, ``schema``, ``strict``, ``description``)."""

    type: str
    json_schema: Mapping[str, Any] | None = None

    @property
    def schema(self) -> Mapping[str, Any]:
        schema = (self.json_schema or {}).get("schema")
        return schema if isinstance(schema, Mapping) else {"type": "object"}

    @property
    def name(self) -> str:
        return str((self.json_schema or {}).get("name") or "response")


@dataclass(frozen=True)
class ChatRequest:
    """A provider-neutral chat request; adapters translate it to each API's shape."""

    messages: tuple[Message, ...]
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: tuple[str, ...] | None = None
    user: str | None = None
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    seed: int | None = None
    #: Set instead of ``max_tokens`` when the caller used OpenAI's newer name for it.
    max_completion_tokens: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: Mapping[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    metadata: Mapping[str, str] | None = None
    #: How many answers to give (OpenAI kinds only).
    n: int = 1
    #: Ask the provider for token usage at the end of a stream.
    include_usage: bool = False
    #: Whose cached answers this request may fall back to ("" for everyone's); the HTTP
    #: API passes the caller's key or user id so tenants never see each other's answers.
    cache_scope: str = ""
    #: The provider this request's session is pinned to (:mod:`flexiai_django.sessions`):
    #: tried first while it can serve. Set by the HTTP API from ``X-FlexiAI-Session``.
    pinned: str | None = None

    #: The keyword arguments ``chat()``, ``achat()``, ``stream()``, ``astream()`` and
    #: ``llm()`` accept besides the messages.
    PARAMS: ClassVar[tuple[str, ...]] = (
        "model", "temperature", "max_tokens", "top_p", "stop", "user", "tools", "tool_choice",
        "parallel_tool_calls", "response_format", "seed", "max_completion_tokens",
        "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs",
        "metadata", "n", "include_usage", "cache_scope")

    @property
    def token_limit(self) -> int | None:
        """The answer's length limit, whichever of OpenAI's two names set it."""
        return self.max_tokens if self.max_tokens is not None else self.max_completion_tokens

    def options_set(self) -> tuple[str, ...]:
        """The optional OpenAI fields this request sets (what an adapter must honour)."""
        names = ("tools", "tool_choice", "parallel_tool_calls", "response_format", "seed",
                 "presence_penalty", "frequency_penalty", "logit_bias", "logprobs",
                 "top_logprobs", "metadata", "user", "n")
        defaults: dict[str, Any] = {"parallel_tool_calls": True, "logprobs": False, "n": 1}
        return tuple(n for n in names
                     if getattr(self, n) not in (None, (), defaults.get(n)))

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        """Raise ``TypeError`` naming any keyword argument that would otherwise be lost."""
        unknown = sorted(set(params) - set(cls.PARAMS))
        if unknown:
            raise TypeError(f"unexpected keyword argument{'s' if len(unknown) > 1 else ''} "
                            f"{', '.join(map(repr, unknown))}; expected one of "
                            f"{', '.join(cls.PARAMS)}")

    @classmethod
    def build(cls, messages: Any, **params: Any) -> ChatRequest:
        """Accept a string, dicts or Message objects, as callers naturally write them.

        Raises ``TypeError`` for a keyword argument not in :attr:`PARAMS` (a misspelt
        ``max_token=50`` must not be silently ignored).
        """
        cls.check_params(params)
        if isinstance(messages, str):
            msgs: tuple[Message, ...] = (Message("user", messages),)
        else:
            msgs = tuple(
                m if isinstance(m, Message) else Message(str(m["role"]), str(m["content"]))
                for m in messages
            )
        stop = params.pop("stop", None)
        if isinstance(stop, str):
            stop = (stop,)
        elif stop is not None:
            stop = tuple(stop)
        return cls(messages=msgs, stop=stop, **params)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.prompt_tokens + other.prompt_tokens,
                     self.completion_tokens + other.completion_tokens)


@dataclass(frozen=True)
class Choice:
    """One more answer to a request that asked for several (``n`` > 1); the first is the
    :class:`Completion` or :class:`ChatResult` itself."""

    index: int
    content: str
    finish_reason: str | None = "stop"
    tool_calls: tuple[ToolCall, ...] = ()
    refusal: str | None = None
    logprobs: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Completion:
    """What one adapter got back from one provider.

    A tool-call answer has ``tool_calls`` and usually empty ``content``: it is an answer
    like any other. ``logprobs`` is OpenAI's object, as the provider gave it.
    """

    content: str
    model: str
    finish_reason: str | None = "stop"
    usage: Usage = field(default_factory=Usage)
    tool_calls: tuple[ToolCall, ...] = ()
    refusal: str | None = None
    logprobs: Mapping[str, Any] | None = None
    #: The other answers, when the request asked for ``n`` > 1.
    more: tuple[Choice, ...] = ()


@dataclass(frozen=True)
class Attempt:
    provider: str
    outcome: str  # "ok", an error kind, or "skipped:<state>"


@dataclass(frozen=True)
class ChatResult:
    """The answer plus where it came from: provider, tier, attempts and latency."""

    content: str
    tier: Tier
    provider: str | None
    model: str | None
    attempts: int
    latency_ms: float
    finish_reason: str | None = "stop"
    usage: Usage = field(default_factory=Usage)
    trail: tuple[Attempt, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    refusal: str | None = None
    logprobs: Mapping[str, Any] | None = None
    #: Request fields the serving provider could not honour and that were left out.
    dropped: tuple[str, ...] = ()
    #: The other answers, when the request asked for ``n`` > 1.
    more: tuple[Choice, ...] = ()
    #: A stream continued after its provider broke mid-answer: the providers that wrote
    #: its first parts, in order (``provider`` wrote the end). Empty otherwise.
    continued_from: tuple[str, ...] = ()

    @property
    def continued(self) -> bool:
        return bool(self.continued_from)

    @property
    def degraded(self) -> bool:
        return self.tier != "provider"

    def __str__(self) -> str:
        return self.content


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a streamed tool call, as OpenAI streams them: the first piece of call
    ``index`` has its ``id`` and ``name``; later ones add to its ``arguments``."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True)
class StreamDelta:
    """One piece of a streamed answer as an adapter parsed it."""

    content: str = ""
    finish_reason: str | None = None
    model: str | None = None
    final: bool = False
    usage: Usage | None = None
    tool_calls: tuple[ToolCallDelta, ...] = ()
    refusal: str = ""
    logprobs: Mapping[str, Any] | None = None
    #: Which answer this piece belongs to, when the request asked for ``n`` > 1.
    choice: int = 0

    @property
    def substantive(self) -> bool:
        """Carries part of the answer itself: once sent, the provider can't be swapped."""
        return bool(self.content or self.tool_calls or self.refusal)
