"""Plain value types shared by adapters, the router and the public API."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Tier = Literal["provider", "cache", "degraded"]


@dataclass(frozen=True)
class Message:
    role: str
    content: str


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
    #: Whose cached answers this request may fall back to ("" for everyone's); the HTTP
    #: API passes the caller's key or user id so tenants never see each other's answers.
    cache_scope: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, messages: Any, **params: Any) -> ChatRequest:
        """Accept a string, dicts or Message objects, as callers naturally write them."""
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
        known = {k: params.pop(k) for k in ("model", "temperature", "max_tokens", "top_p", "user",
                                            "cache_scope") if k in params}
        return cls(messages=msgs, stop=stop, extra=params, **known)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Completion:
    """What one adapter got back from one provider."""

    content: str
    model: str
    finish_reason: str | None = "stop"
    usage: Usage = field(default_factory=Usage)


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

    @property
    def degraded(self) -> bool:
        return self.tier != "provider"

    def __str__(self) -> str:
        return self.content


@dataclass(frozen=True)
class StreamDelta:
    """One piece of a streamed answer as an adapter parsed it."""

    content: str = ""
    finish_reason: str | None = None
    model: str | None = None
    final: bool = False
    usage: Usage | None = None
