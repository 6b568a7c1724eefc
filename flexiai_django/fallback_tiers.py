"""The fallback tiers: what a request gets when no provider answered it.

The cache tier (the last good answer for the same request, :mod:`flexiai_django.cache_tier`),
then the degraded tier (``DEGRADED_MESSAGE``), else :class:`NoProviderAvailable` (a 503
whose ``Retry-After`` is the soonest any provider asked for). A request no provider could
carry is refused as what it is instead (a 400).
"""

from __future__ import annotations

from typing import Any

from flexiai_django import metrics
from flexiai_django.chat_types import ChatResult, ToolCall
from flexiai_django.conf import get_settings
from flexiai_django.errors import (
    ContextLengthExceeded,
    NoProviderAvailable,
    UnsupportedParameters,
)
from flexiai_django.walk import TOO_LONG, Walk


def answer(walk: Walk, cached: dict[str, Any] | None) -> ChatResult:
    """The cache tier (``cached``: what it recalled for the request, or None), then the
    degraded tier, then NoProviderAvailable, for a walk that ended with no answer.

    A request no provider could carry, or one too long for every window tried (by
    the estimate or the provider's own refusal), is refused as what it is (a 400)
    rather than answered from a fallback tier. Too long for some and down elsewhere
    is an outage: the fallback tiers answer.
    """
    if walk.unfit and not walk.attempts and len(walk.unfit) == len(walk.trail):
        raise UnsupportedParameters(walk.unfit)
    if walk.too_long is not None and all(
            a.outcome in (TOO_LONG, ContextLengthExceeded.kind) for a in walk.trail):
        raise walk.too_long
    if cached is not None:
        metrics.fell_back("cache")
        calls = tuple(ToolCall(**c) for c in cached.get("tool_calls") or ())
        return ChatResult(
            content=cached["content"], tier="cache", provider=cached.get("provider"),
            model=cached.get("model"), attempts=walk.attempts, latency_ms=walk.latency_ms,
            trail=tuple(walk.trail), tool_calls=calls,
            finish_reason="tool_calls" if calls else "stop",
        )
    settings = get_settings()
    if settings.DEGRADED_MESSAGE:
        metrics.fell_back("degraded")
        return ChatResult(
            content=settings.DEGRADED_MESSAGE, tier="degraded", provider=None, model=None,
            attempts=walk.attempts, latency_ms=walk.latency_ms, finish_reason="stop",
            trail=tuple(walk.trail),
        )
    retry_after = min(walk.retry_hints, default=settings.RETRY_AFTER_SECONDS)
    metrics.fell_back("none")
    raise NoProviderAvailable(
        retry_after=max(1, round(retry_after)),
        attempts=walk.attempts,
        errors=[f"{a.provider}: {a.outcome}" for a in walk.trail],
    )
