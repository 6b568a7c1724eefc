"""Plain value types shared by adapters, the fallback chain and the public API."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

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

    #: The keyword arguments ``chat()``, ``achat()``, ``stream()``, ``astream()`` and
    #: ``llm()`` accept besides the messages.
    PARAMS: ClassVar[tuple[str, ...]] = ("model", "temperature", "max_tokens", "top_p", "stop",
                                         "user", "cache_scope")

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
