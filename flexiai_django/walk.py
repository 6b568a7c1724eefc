"""One request's trip down the fallback chain: :class:`Walk` keeps its bookkeeping.

Shared by the plain loops (:mod:`flexiai_django.chain`), the hedged one
(:mod:`flexiai_django.hedged_chain`), streams (:mod:`flexiai_django.streams`) and stream
resumption, so each applies the same rules: the candidates in routing order (a session's
pin first, warming providers held back), whether a provider can carry the request at all,
the breaker's admission and the in-flight slot, a transient failure retried on the same
provider (:mod:`flexiai_django.retries`, a ``Retry-After`` cooling the breaker down for the
whole deployment), the trail, metrics and tracing spans. When no provider answers,
:mod:`flexiai_django.fallback_tiers` has the last word.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from flexiai_django import (
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
from flexiai_django.breakers.state import Admission
from flexiai_django.breakers.store import BreakerStore
from flexiai_django.chat_types import Attempt, ChatRequest, ChatResult, Completion
from flexiai_django.conf import get_settings
from flexiai_django.errors import ContextLengthExceeded, ProviderError
from flexiai_django.providers.base import MESSAGE_NAME, ProviderAdapter, ProviderConfig
from flexiai_django.request_slots import RequestSlots
from flexiai_django.verdicts import arecord, record, success_of

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
