"""The fallback chain: providers in order → cached answer → degraded message → 503.

Each attempt goes through the provider's breaker: an open breaker is skipped without
a network call; a provider failure is recorded and, unless it was transient and worth
another try on the same provider (:mod:`flexiai_django.retries`), the next provider is
tried; a request error (the caller's fault) stops the chain at once. A provider's
``Retry-After`` cools its breaker down for the whole deployment. :class:`Walk` is one
request's bookkeeping, shared by plain calls (here) and streams
(:mod:`flexiai_django.streams`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from flexiai_django import (
    cache_tier,
    hedging,
    metrics,
    ordering,
    recent_calls,
    retries,
    route,
    sessions,
    strategies,
    token_estimate,
    tracing,
    warming,
)
from flexiai_django.breakers import get_store
from flexiai_django.breakers.state import Admission
from flexiai_django.breakers.store import BreakerStore
from flexiai_django.chat_types import Attempt, ChatRequest, ChatResult, Completion, ToolCall
from flexiai_django.conf import get_settings
from flexiai_django.errors import (
    ContextLengthExceeded,
    NoProviderAvailable,
    ProviderError,
    UnsupportedParameters,
)
from flexiai_django.provider_cache import aget_providers, get_providers
from flexiai_django.providers import get_adapter
from flexiai_django.providers.base import MESSAGE_NAME, ProviderAdapter, ProviderConfig
from flexiai_django.providers.clients import async_client, sync_client
from flexiai_django.request_slots import RequestSlots

logger = logging.getLogger("flexiai_django")

#: The trail's outcome for a provider skipped because the request cannot fit its window.
TOO_LONG = "too_long"

#: The trail's outcome for a provider skipped because its in-flight slots are all taken.
AT_CAPACITY = "skipped:at_capacity"

#: Extra seconds on a wait a provider asked for, so the cooldown it set (by the shared
#: store's clock) is over when the retry asks to be admitted.
HINT_MARGIN = 0.05

#: Fields that only inform the provider (abuse monitoring, dashboards): a provider kind
#: that cannot carry them still serves, and the answer names them as dropped.
ADVISORY = frozenset({"user", "metadata", MESSAGE_NAME})


def success_of(exc: ProviderError) -> bool | None:
    """What the breaker records: ``False`` (a failure), or ``None`` for errors that are not
    outages. ``True`` is for answers; the store's ``record(success=…)`` takes this."""
    return False if exc.trips_breaker else None


class Walk:
    """Bookkeeping for one request's trip down the chain, shared by sync and async."""

    def __init__(self, request: ChatRequest,
                 rand: Callable[[], float] = random.random) -> None:
        self.request = request
        self.rand = rand
        self.started = time.monotonic()
        self.attempts = 0
        self.attempt_started = self.started
        self.retries = 0  # on the current provider
        self.provider_started = self.started
        self.trail: list[Attempt] = []
        self.retry_hints: list[float] = []
        self.unfit: dict[str, tuple[str, ...]] = {}
        self.dropped: dict[str, tuple[str, ...]] = {}
        self.too_long: ContextLengthExceeded | None = None
        self._needed: int | None = None
        self._spans: dict[str, Any] = {}  # provider name → its attempt's span (tracing)
        self.span: Any = None  # a stream's request span (tracing), parent of its attempts
        self.slots = RequestSlots()

    def candidates(self, providers: tuple[ProviderConfig, ...],
                   counts: dict[str, int] | None = None) -> list[ProviderConfig]:
        """The providers to try, in order: the session's pinned one first, when it is one;
        the others (all, for a new session) in the alias's routing strategy's order
        (:mod:`flexiai_django.route`; ``counts``: in-flight counts already read). Warming
        providers are left out but for their trickle (:mod:`~flexiai_django.warming`),
        after routing: ``overflow`` counts a warming tier as full."""
        settings = get_settings()
        ordered = ordering.order(
            ordering.select(providers, self.request.model, settings.MODEL_ALIASES))
        strategy = self.slots.strategy = strategies.strategy_for(self.request.model,
                                                                 settings.ROUTING)
        if self.request.pinned is None and strategy != strategies.PRIORITY:
            ordered = route.ordered(strategy, ordered, counts)
        ordered = warming.admit(ordered, settings.WARMING_TRICKLE, self.rand)
        return sessions.pin_first(ordered, self.request.pinned)

    async def acandidates(self, providers: tuple[ProviderConfig, ...]) -> list[ProviderConfig]:
        """:meth:`candidates` for async code: the in-flight counts are read off the loop."""
        settings = get_settings()
        strategy = strategies.strategy_for(self.request.model, settings.ROUTING)
        counts = None
        if self.request.pinned is None and route.needs_counts(strategy):
            counts = await route.acounts(strategy, ordering.select(
                providers, self.request.model, settings.MODEL_ALIASES))
        return self.candidates(providers, counts)

    def release(self, provider: ProviderConfig) -> None:
        self.slots.release(provider.name)

    def at_capacity(self, provider: ProviderConfig) -> None:
        self.trail.append(Attempt(provider.name, AT_CAPACITY))

    @property
    def latency_ms(self) -> float:
        return (time.monotonic() - self.started) * 1000

    def attempt(self) -> None:
        """A provider call starts now: its latency is measured from here."""
        self.attempts += 1
        self.attempt_started = time.monotonic()

    def aborted(self, provider: ProviderConfig) -> None:
        """The attempt ended with no verdict (cancelled, or an unexpected exception)."""
        self.traced(provider, "aborted")
        metrics.aborted(provider.name)

    def observe(self, provider: ProviderConfig, ok: bool, seconds: float | None = None) -> float:
        """Feed this worker's recent-figures window (status page); returns the latency."""
        elapsed = time.monotonic() - self.attempt_started if seconds is None else seconds
        recent_calls.local().record(provider.name, ok, elapsed * 1000)
        return elapsed

    def fits(self, provider: ProviderConfig, adapter: ProviderAdapter) -> bool:
        """Can this provider carry the whole request? One that would lose a field the
        answer depends on is skipped (no call, no breaker verdict) unless the settings
        allow dropping it; advisory fields are always dropped, and named as dropped.
        One whose ``context_window`` the request clearly exceeds is skipped the same way
        (see :meth:`window_fits`)."""
        missing = adapter.unsupported(self.request)
        if missing and not (get_settings().DROP_UNSUPPORTED_PARAMS
                            or ADVISORY.issuperset(missing)):
            self.unfit[provider.name] = tuple(m for m in missing if m not in ADVISORY)
            self.trail.append(Attempt(provider.name, "unsupported"))
            return False
        if not self.window_fits(provider):
            return False
        if missing:
            self.dropped[provider.name] = missing
        return True

    def window_fits(self, provider: ProviderConfig) -> bool:
        """Whether the request's estimated tokens (:mod:`flexiai_django.token_estimate`)
        fit the provider's ``context_window``; one too small is noted as ``too_long``, so
        the request goes to a larger window, or is refused as too long for every one."""
        window = provider.context_window
        if window is None:
            return True
        if self._needed is None:
            self._needed = token_estimate.needed_tokens(self.request)
        if self._needed <= window:
            return True
        self.trail.append(Attempt(provider.name, TOO_LONG))
        if self.too_long is None:
            self.too_long = ContextLengthExceeded(
                f"This request needs about {self._needed} tokens (prompt and max_tokens), "
                f"more than the context window of every provider for this model.",
                provider=provider.name, status=400)
        return False

    def admitted(self, provider: ProviderConfig, admission: Admission) -> bool:
        """Whether the breaker let the attempt through (it then starts now); a refusal
        is noted."""
        if not admission.allowed:
            self.skipped(provider, admission)
            return False
        self.attempt()
        span = tracing.attempt_span(provider, self.retries, self.span)
        if span is not None:
            self._spans[provider.name] = span
        return True

    def ended(self, result: ChatResult | None = None,
              error: BaseException | str | None = None) -> None:
        """A stream is over: end its request span, when tracing made one."""
        span, self.span = self.span, None
        tracing.stream_done(span, result, error)

    def traced(self, provider: ProviderConfig, outcome: str,
               completion: Completion | None = None) -> None:
        """End the provider's attempt span, when tracing made one."""
        span = self._spans.pop(provider.name, None)
        if span is not None:
            tracing.attempt_done(span, outcome, completion)

    def admit(self, store: BreakerStore, provider: ProviderConfig,
              adapter: ProviderAdapter) -> Admission | None:
        """The breaker's admission for an attempt that starts now, or None to skip."""
        if not self.fits(provider, adapter):
            return None
        self.retries, self.provider_started = 0, time.monotonic()
        admission = store.acquire(provider.breaker_name, provider.breaker)
        if admission.allowed and not self.slots.hold(provider):
            record(store, provider, admission, None)  # frees a half-open probe slot
            self.at_capacity(provider)
            return None
        return admission if self.admitted(provider, admission) else None

    async def aadmit(self, store: BreakerStore, provider: ProviderConfig,
                     adapter: ProviderAdapter) -> Admission | None:
        """:meth:`admit` for async code (the store decides on the loop when it can)."""
        if not self.fits(provider, adapter):
            return None
        self.retries, self.provider_started = 0, time.monotonic()
        admission = await store.aacquire(provider.breaker_name, provider.breaker)
        if admission.allowed and not await self.slots.ahold(provider):
            await arecord(store, provider, admission, None)
            self.at_capacity(provider)
            return None
        return admission if self.admitted(provider, admission) else None

    def again(self, store: BreakerStore, provider: ProviderConfig,
              exc: ProviderError) -> Admission | None:
        """After a failed try: cool the provider down deployment-wide if it asked, then
        wait and take the admission for another try on it, or None to fail over."""
        if exc.retry_after is not None:
            store.cool_down(provider.breaker_name, provider.breaker, exc.retry_after)
        wait = self.retry_wait(provider, exc)
        if wait is None:
            return None
        time.sleep(wait)
        return self.readmitted(provider, store.acquire(provider.breaker_name, provider.breaker))

    def after_failure(self, store: BreakerStore, provider: ProviderConfig,
                      admission: Admission, exc: ProviderError) -> Admission | None:
        """A try failed: its breaker verdict, the trail, then the admission for another
        try on the same provider (:meth:`again`), or None to go on down the chain. Raises
        ``exc`` when no provider may be tried after it (a request error)."""
        record(store, provider, admission, success_of(exc), exc.kind)
        self.failed(provider, exc)
        again = self.again(store, provider, exc)
        if again is None:
            self.release(provider)
        return again

    async def aafter_failure(self, store: BreakerStore, provider: ProviderConfig,
                             admission: Admission, exc: ProviderError) -> Admission | None:
        """:meth:`after_failure` for async code."""
        await arecord(store, provider, admission, success_of(exc), exc.kind)
        self.failed(provider, exc)
        again = await self.aagain(store, provider, exc)
        if again is None:
            self.release(provider)
        return again

    def abandon(self, store: BreakerStore, provider: ProviderConfig, admission: Admission,
                verdict: bool | None = None) -> None:
        """A try that ended with no answer of its own (cancelled, its caller gone, a bug):
        counted as aborted, and ``verdict`` (by default none) recorded, freeing a probe."""
        self.aborted(provider)
        self.release(provider)
        record(store, provider, admission, verdict)

    async def aabandon(self, store: BreakerStore, provider: ProviderConfig,
                       admission: Admission, verdict: bool | None = None) -> None:
        """:meth:`abandon` for async code."""
        self.aborted(provider)
        self.release(provider)
        await arecord(store, provider, admission, verdict)

    async def aagain(self, store: BreakerStore, provider: ProviderConfig,
                     exc: ProviderError) -> Admission | None:
        """:meth:`again` for async code."""
        if exc.retry_after is not None:
            await store.acool_down(provider.breaker_name, provider.breaker, exc.retry_after)
        wait = self.retry_wait(provider, exc)
        if wait is None:
            return None
        await asyncio.sleep(wait)
        admission = await store.aacquire(provider.breaker_name, provider.breaker)
        return self.readmitted(provider, admission)

    def retry_wait(self, provider: ProviderConfig, exc: ProviderError) -> float | None:
        """Seconds before the same provider is tried again, or None (see :mod:`.retries`)."""
        spent = time.monotonic() - self.provider_started
        wait = retries.delay(exc, self.retries, provider, get_settings(), self.rand(), spent)
        if wait is not None and exc.retry_after is not None:
            wait += HINT_MARGIN
        return wait

    def readmitted(self, provider: ProviderConfig, admission: Admission) -> Admission | None:
        """The breaker's word on a retry (it may have opened, or cooled down further)."""
        if not self.admitted(provider, admission):
            return None
        self.retries += 1
        if (span := self._spans.get(provider.name)) is not None:
            span.set_attribute("flexiai.retries", self.retries)
        metrics.retried(provider.name)
        return admission

    def skipped(self, provider: ProviderConfig, admission: Admission) -> None:
        metrics.rejected(provider.breaker_name)
        self.trail.append(Attempt(provider.name, f"skipped:{admission.refusal}"))
        if admission.retry_after is not None:
            self.retry_hints.append(admission.retry_after)

    def failed(self, provider: ProviderConfig, exc: ProviderError) -> None:
        """Note a failed attempt; re-raise it when the next provider must not be tried."""
        self.traced(provider, exc.kind)
        self.trail.append(Attempt(provider.name, exc.kind))
        if exc.fails_over:
            self.observe(provider, ok=False)
        metrics.attempt_failed(provider.name, exc.kind)
        if exc.retry_after is not None:
            self.retry_hints.append(exc.retry_after)
        if isinstance(exc, ContextLengthExceeded):
            self.too_long = exc
        logger.warning(
            "provider %s attempt failed: %s%s", provider.name, exc.kind,
            f" (HTTP {exc.status})" if exc.status else "",
            extra={"provider": provider.name, "error": exc.kind, "status": exc.status},
        )
        if not exc.fails_over:
            metrics.request_failed(provider.name, metrics.outcome_of(exc.kind))
            raise exc

    def answered(self, provider: ProviderConfig, completion: Completion,
                 seconds: float | None = None) -> ChatResult:
        """``seconds``: the attempt's latency when not "until now" (a stream's first chunk)."""
        self.trail.append(Attempt(provider.name, "ok"))
        self.traced(provider, "ok", completion)
        elapsed = self.observe(provider, ok=True, seconds=seconds)
        recent_calls.local().first_token(provider.name, elapsed, streamed=seconds is not None)
        metrics.answered(provider.name, elapsed)
        metrics.used(provider.name, completion.usage.prompt_tokens,
                     completion.usage.completion_tokens)
        return ChatResult(
            content=completion.content,
            tier="provider",
            provider=provider.name,
            model=completion.model,
            attempts=self.attempts,
            latency_ms=self.latency_ms,
            finish_reason=completion.finish_reason,
            usage=completion.usage,
            trail=tuple(self.trail),
            tool_calls=completion.tool_calls,
            refusal=completion.refusal,
            logprobs=completion.logprobs,
            dropped=self.dropped.get(provider.name, ()),
            more=completion.more,
        )

    def fallback(self, cached: dict[str, Any] | None) -> ChatResult:
        """The cache tier, then the degraded tier, then NoProviderAvailable.

        A request no provider could carry, or one too long for every window tried (by
        the estimate or the provider's own refusal), is refused as what it is (a 400)
        rather than answered from a fallback tier. Too long for some and down elsewhere
        is an outage: the fallback tiers answer.
        """
        if self.unfit and not self.attempts and len(self.unfit) == len(self.trail):
            raise UnsupportedParameters(self.unfit)
        if self.too_long is not None and all(
                a.outcome in (TOO_LONG, ContextLengthExceeded.kind) for a in self.trail):
            raise self.too_long
        if cached is not None:
            metrics.fell_back("cache")
            calls = tuple(ToolCall(**c) for c in cached.get("tool_calls") or ())
            return ChatResult(
                content=cached["content"], tier="cache", provider=cached.get("provider"),
                model=cached.get("model"), attempts=self.attempts, latency_ms=self.latency_ms,
                trail=tuple(self.trail), tool_calls=calls,
                finish_reason="tool_calls" if calls else "stop",
            )
        settings = get_settings()
        if settings.DEGRADED_MESSAGE:
            metrics.fell_back("degraded")
            return ChatResult(
                content=settings.DEGRADED_MESSAGE, tier="degraded", provider=None, model=None,
                attempts=self.attempts, latency_ms=self.latency_ms, finish_reason="stop",
                trail=tuple(self.trail),
            )
        retry_after = min(self.retry_hints, default=settings.RETRY_AFTER_SECONDS)
        metrics.fell_back("none")
        raise NoProviderAvailable(
            retry_after=max(1, round(retry_after)),
            attempts=self.attempts,
            errors=[f"{a.provider}: {a.outcome}" for a in self.trail],
        )


def complete(request: ChatRequest) -> ChatResult:
    with tracing.request_span(request) as span:
        result = _complete(request)
        tracing.request_done(span, result)
        return result


async def acomplete(request: ChatRequest) -> ChatResult:
    hedged = hedging.hedged(request)
    with tracing.request_span(request, hedged=hedged) as span:
        result = await (_ahedged_complete(request) if hedged else _acomplete(request))
        tracing.request_done(span, result)
        return result


def _complete(request: ChatRequest) -> ChatResult:
    walk = Walk(request)
    try:
        return _walk(walk)
    finally:
        walk.slots.release_all()


def _walk(walk: Walk) -> ChatResult:
    request, store = walk.request, get_store()
    for provider in walk.candidates(get_providers()):
        adapter = get_adapter(provider)
        admission = walk.admit(store, provider, adapter)
        while admission is not None:
            try:
                completion = adapter.complete(sync_client(provider.name), request)
            except ProviderError as exc:
                admission = walk.after_failure(store, provider, admission, exc)
                continue
            except BaseException:
                walk.abandon(store, provider, admission)
                raise
            record(store, provider, admission, True)
            cache_tier.remember(request, provider.name, completion)
            return walk.answered(provider, completion)
    return walk.fallback(cache_tier.recall(request))


async def _acomplete(request: ChatRequest) -> ChatResult:
    walk = Walk(request)
    try:
        return await _awalk(walk)
    finally:
        walk.slots.release_all()


async def _awalk(walk: Walk) -> ChatResult:
    request, store = walk.request, get_store()
    for provider in await walk.acandidates(await aget_providers()):
        adapter = get_adapter(provider)
        admission = await walk.aadmit(store, provider, adapter)
        while admission is not None:
            try:
                completion = await adapter.acomplete(async_client(provider.name), request)
            except ProviderError as exc:
                admission = await walk.aafter_failure(store, provider, admission, exc)
                continue
            except BaseException:
                await walk.aabandon(store, provider, admission)
                raise
            await arecord(store, provider, admission, True)
            cache_tier.remember_soon(request, provider.name, completion)
            return walk.answered(provider, completion)
    return walk.fallback(await cache_tier.arecall(request))


async def _ahedged_complete(request: ChatRequest) -> ChatResult:
    """:func:`acomplete` for a hedged alias: :func:`hedging.race` runs the attempts."""
    walk = Walk(request)
    try:
        return await _ahedged_walk(walk)
    finally:
        walk.slots.release_all()


async def _ahedged_walk(walk: Walk) -> ChatResult:
    request, store = walk.request, get_store()

    async def start(provider: ProviderConfig, adapter: ProviderAdapter) -> Completion:
        return await adapter.acomplete(async_client(provider.name), request)

    candidates = await walk.acandidates(await aget_providers())
    won = await hedging.race(walk, store, candidates, start, streamed=False)
    if won is None:
        return walk.fallback(await cache_tier.arecall(request))
    await arecord(store, won.provider, won.admission, True)
    cache_tier.remember_soon(request, won.provider.name, won.value)
    return walk.answered(won.provider, won.value)


def record(
    store: BreakerStore,
    provider: ProviderConfig,
    admission: Admission,
    success: bool | None,
    error: str | None = None,
) -> None:
    if admission.recorded:
        store.record(provider.breaker_name, provider.breaker, success=success,
                     probe=admission.probe, error=error)


async def arecord(
    store: BreakerStore,
    provider: ProviderConfig,
    admission: Admission,
    success: bool | None,
    error: str | None = None,
) -> None:
    if admission.recorded:
        await store.arecord(provider.breaker_name, provider.breaker, success=success,
                            probe=admission.probe, error=error)
