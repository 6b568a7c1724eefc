"""The fallback chain: providers in order → cached answer → degraded message → 503.

Each attempt goes through the provider's breaker: an open breaker is skipped without
a network call; a provider failure is recorded and the next provider is tried; a
request error (the caller's fault) stops the chain at once. Streams fail over only
before their first chunk reaches the caller.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from itertools import chain
from typing import Any

from flexiai_django import cache_tier, metrics, ordering, stats
from flexiai_django.breakers import get_store
from flexiai_django.breakers.state import Admission
from flexiai_django.breakers.store import BreakerStore
from flexiai_django.conf import get_settings
from flexiai_django.errors import NoProviderAvailable, ProviderError, StreamInterrupted
from flexiai_django.providers import get_adapter
from flexiai_django.providers.base import ProviderConfig
from flexiai_django.providers.clients import async_client, sync_client
from flexiai_django.registry import aget_providers, get_providers
from flexiai_django.types import Attempt, ChatRequest, ChatResult, Completion, StreamDelta, Usage

logger = logging.getLogger("flexiai_django")


def _verdict(exc: ProviderError) -> bool | None:
    """What the breaker hears: a failure, or no verdict for errors that are not outages."""
    return False if exc.trips_breaker else None


class Walk:
    """Bookkeeping for one request's trip down the chain, shared by sync and async."""

    def __init__(self, request: ChatRequest) -> None:
        self.request = request
        self.started = time.monotonic()
        self.attempts = 0
        self.attempt_started = self.started
        self.trail: list[Attempt] = []
        self.retry_hints: list[float] = []

    def candidates(self, providers: tuple[ProviderConfig, ...]) -> list[ProviderConfig]:
        aliases = get_settings().MODEL_ALIASES
        return ordering.order(ordering.select(providers, self.request.model, aliases))

    @property
    def latency_ms(self) -> float:
        return (time.monotonic() - self.started) * 1000

    def attempt(self) -> None:
        """A provider call starts now: its latency is measured from here."""
        self.attempts += 1
        self.attempt_started = time.monotonic()

    def aborted(self, provider: ProviderConfig) -> None:
        """The attempt ended with no verdict (cancelled, or an unexpected exception)."""
        metrics.aborted(provider.name)

    def observe(self, provider: ProviderConfig, ok: bool, seconds: float | None = None) -> float:
        """Feed this worker's recent-figures window (status page); returns the latency."""
        elapsed = time.monotonic() - self.attempt_started if seconds is None else seconds
        stats.local().record(provider.name, ok, elapsed * 1000)
        return elapsed

    def skipped(self, provider: ProviderConfig, admission: Admission) -> None:
        metrics.rejected(provider.breaker_name)
        self.trail.append(Attempt(provider.name, f"skipped:{admission.state.state.value}"))
        if admission.retry_after is not None:
            self.retry_hints.append(admission.retry_after)

    def failed(self, provider: ProviderConfig, exc: ProviderError) -> None:
        """Note a failed attempt; re-raise it when the next provider must not be tried."""
        self.trail.append(Attempt(provider.name, exc.kind))
        if exc.fails_over:
            self.observe(provider, ok=False)
        metrics.attempt_failed(provider.name, exc.kind)
        if exc.retry_after is not None:
            self.retry_hints.append(exc.retry_after)
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
        metrics.answered(provider.name, self.observe(provider, ok=True, seconds=seconds))
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
        )

    def fallback(self, cached: dict[str, Any] | None) -> ChatResult:
        """The cache tier, then the degraded tier, then NoProviderAvailable."""
        if cached is not None:
            metrics.fell_back("cache")
            return ChatResult(
                content=cached["content"], tier="cache", provider=cached.get("provider"),
                model=cached.get("model"), attempts=self.attempts, latency_ms=self.latency_ms,
                trail=tuple(self.trail),
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
    walk, store = Walk(request), get_store()
    for provider in walk.candidates(get_providers()):
        admission = store.acquire(provider.breaker_name, provider.breaker)
        if not admission.allowed:
            walk.skipped(provider, admission)
            continue
        walk.attempt()
        try:
            completion = get_adapter(provider).complete(sync_client(provider.name), request)
        except ProviderError as exc:
            _record(store, provider, admission, _verdict(exc), exc.kind)
            walk.failed(provider, exc)
            continue
        except BaseException:
            walk.aborted(provider)
            _record(store, provider, admission, None)
            raise
        _record(store, provider, admission, True)
        cache_tier.remember(request, provider.name, completion)
        return walk.answered(provider, completion)
    return walk.fallback(cache_tier.recall(request))


async def acomplete(request: ChatRequest) -> ChatResult:
    walk, store = Walk(request), get_store()
    for provider in walk.candidates(await aget_providers()):
        admission = await store.aacquire(provider.breaker_name, provider.breaker)
        if not admission.allowed:
            walk.skipped(provider, admission)
            continue
        walk.attempt()
        try:
            completion = await get_adapter(provider).acomplete(
                async_client(provider.name), request
            )
        except ProviderError as exc:
            await _arecord(store, provider, admission, _verdict(exc), exc.kind)
            walk.failed(provider, exc)
            continue
        except BaseException:
            walk.aborted(provider)
            await _arecord(store, provider, admission, None)
            raise
        await _arecord(store, provider, admission, True)
        cache_tier.remember_soon(request, provider.name, completion)
        return walk.answered(provider, completion)
    return walk.fallback(await cache_tier.arecall(request))


def _record(
    store: BreakerStore,
    provider: ProviderConfig,
    admission: Admission,
    success: bool | None,
    error: str | None = None,
) -> None:
    if admission.recorded:
        store.record(provider.breaker_name, provider.breaker, success=success,
                     probe=admission.probe, error=error)


async def _arecord(
    store: BreakerStore,
    provider: ProviderConfig,
    admission: Admission,
    success: bool | None,
    error: str | None = None,
) -> None:
    if admission.recorded:
        await store.arecord(provider.breaker_name, provider.breaker, success=success,
                            probe=admission.probe, error=error)


class _StreamState:
    """What a stream knows about itself; filled in as it goes, complete once it ends."""

    def __init__(self, walk: Walk, provider: ProviderConfig | None,
                 admission: Admission | None, head: list[StreamDelta]) -> None:
        self.walk = walk
        self.provider = provider
        self.admission = admission
        self.head = head
        self.parts: list[str] = []
        self.finish_reason: str | None = None
        self.model: str | None = provider.model if provider else None
        self.usage = Usage()
        self.result: ChatResult | None = None
        self.first_chunk_after = time.monotonic() - walk.attempt_started

    def take(self, delta: StreamDelta) -> str:
        self.parts.append(delta.content)
        self.finish_reason = delta.finish_reason or self.finish_reason
        self.model = delta.model or self.model
        if delta.usage is not None:
            self.usage = Usage(self.usage.prompt_tokens + delta.usage.prompt_tokens,
                               self.usage.completion_tokens + delta.usage.completion_tokens)
        return delta.content

    def completion(self) -> Completion:
        return Completion("".join(self.parts), self.model or "", self.finish_reason or "stop",
                          self.usage)

    def interrupted(self, exc: ProviderError) -> StreamInterrupted:
        assert self.provider is not None
        self.walk.trail.append(Attempt(self.provider.name, StreamInterrupted.kind))
        self.walk.observe(self.provider, ok=False)
        metrics.attempt_failed(self.provider.name, StreamInterrupted.kind)
        metrics.request_failed(self.provider.name, "interrupted")
        logger.warning("provider %s stream interrupted: %s", self.provider.name, exc.kind,
                       extra={"provider": self.provider.name, "error": exc.kind})
        return StreamInterrupted(f"stream failed after it started ({exc.kind})",
                                 provider=self.provider.name)

    def finish(self) -> None:
        assert self.provider is not None
        self.result = self.walk.answered(self.provider, self.completion(),
                                         self.first_chunk_after)


class ChatStream:
    """Text pieces of one answer; ``provider``, ``tier`` and ``model`` are known before the first.

    Failover has already happened by the time this object exists, so errors that leave
    no provider raise from :func:`flexiai_django.stream` itself, not mid-iteration.
    """

    def __init__(self, state: _StreamState, deltas: Iterator[StreamDelta] | None,
                 fallback: ChatResult | None = None) -> None:
        self._state = state
        self._deltas = deltas
        self._fallback = fallback

    @property
    def provider(self) -> str | None:
        if self._fallback is not None:
            return self._fallback.provider
        return self._state.provider.name if self._state.provider else None

    @property
    def tier(self) -> str:
        return self._fallback.tier if self._fallback else "provider"

    @property
    def model(self) -> str | None:
        return self._fallback.model if self._fallback else self._state.model

    @property
    def attempts(self) -> int:
        return self._state.walk.attempts

    @property
    def result(self) -> ChatResult | None:
        """The whole answer, once the stream has ended."""
        return self._fallback or self._state.result

    def __iter__(self) -> Iterator[str]:
        if self._fallback is not None:
            yield self._fallback.content
            return
        state, store = self._state, get_store()
        assert state.provider and state.admission and self._deltas is not None
        try:
            for delta in chain(state.head, self._deltas):
                if piece := state.take(delta):
                    yield piece
        except ProviderError as exc:
            _record(store, state.provider, state.admission, False, StreamInterrupted.kind)
            raise state.interrupted(exc) from None
        except GeneratorExit:
            state.walk.aborted(state.provider)
            _record(store, state.provider, state.admission, True)
            raise
        _record(store, state.provider, state.admission, True)
        cache_tier.remember(state.walk.request, state.provider.name, state.completion())
        state.finish()


class AsyncChatStream(ChatStream):
    """The async twin of :class:`ChatStream`: ``async for piece in stream``."""

    def __init__(self, state: _StreamState, deltas: AsyncIterator[StreamDelta] | None,
                 fallback: ChatResult | None = None) -> None:
        super().__init__(state, None, fallback)
        self._adeltas = deltas

    def __iter__(self) -> Iterator[str]:
        raise TypeError("use 'async for' on an async stream")

    async def __aiter__(self) -> AsyncIterator[str]:
        if self._fallback is not None:
            yield self._fallback.content
            return
        state, store = self._state, get_store()
        assert state.provider and state.admission and self._adeltas is not None
        try:
            for delta in state.head:
                if piece := state.take(delta):
                    yield piece
            async for delta in self._adeltas:
                if piece := state.take(delta):
                    yield piece
        except ProviderError as exc:
            await _arecord(store, state.provider, state.admission, False, StreamInterrupted.kind)
            raise state.interrupted(exc) from None
        except (GeneratorExit, asyncio.CancelledError):  # the client went away mid-stream
            state.walk.aborted(state.provider)
            await _arecord(store, state.provider, state.admission, True)
            raise
        await _arecord(store, state.provider, state.admission, True)
        cache_tier.remember_soon(state.walk.request, state.provider.name, state.completion())
        state.finish()


def _head(deltas: Iterator[StreamDelta]) -> list[StreamDelta]:
    """Pull deltas up to the first with content (or the end): the point of no failover."""
    head = []
    for delta in deltas:
        head.append(delta)
        if delta.content or delta.final:
            break
    return head


async def _ahead(deltas: AsyncIterator[StreamDelta]) -> list[StreamDelta]:
    head = []
    async for delta in deltas:
        head.append(delta)
        if delta.content or delta.final:
            break
    return head


def open_stream(request: ChatRequest) -> ChatStream:
    walk, store = Walk(request), get_store()
    for provider in walk.candidates(get_providers()):
        admission = store.acquire(provider.breaker_name, provider.breaker)
        if not admission.allowed:
            walk.skipped(provider, admission)
            continue
        walk.attempt()
        deltas = get_adapter(provider).stream(sync_client(provider.name), request)
        try:
            head = _head(deltas)
        except ProviderError as exc:
            _record(store, provider, admission, _verdict(exc), exc.kind)
            walk.failed(provider, exc)
            continue
        except BaseException:
            walk.aborted(provider)
            _record(store, provider, admission, None)
            raise
        return ChatStream(_StreamState(walk, provider, admission, head), deltas)
    result = walk.fallback(cache_tier.recall(request))
    return ChatStream(_StreamState(walk, None, None, []), None, result)


async def aopen_stream(request: ChatRequest) -> AsyncChatStream:
    walk, store = Walk(request), get_store()
    for provider in walk.candidates(await aget_providers()):
        admission = await store.aacquire(provider.breaker_name, provider.breaker)
        if not admission.allowed:
            walk.skipped(provider, admission)
            continue
        walk.attempt()
        deltas = get_adapter(provider).astream(async_client(provider.name), request)
        try:
            head = await _ahead(deltas)
        except ProviderError as exc:
            await _arecord(store, provider, admission, _verdict(exc), exc.kind)
            walk.failed(provider, exc)
            continue
        except BaseException:
            walk.aborted(provider)
            await _arecord(store, provider, admission, None)
            raise
        return AsyncChatStream(_StreamState(walk, provider, admission, head), deltas)
    result = walk.fallback(await cache_tier.arecall(request))
    return AsyncChatStream(_StreamState(walk, None, None, []), None, result)
