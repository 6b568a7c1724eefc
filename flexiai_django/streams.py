"""Streams through the fallback chain: failover before the first chunk, then one provider.

:func:`open_stream` / :func:`aopen_stream` walk the chain until a provider yields its
first piece (the point of no failover); the :class:`ChatStream` they return carries that
provider's remaining pieces and records the outcome in its breaker when it ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from itertools import chain

from flexiai_django import cache_tier, hedging, metrics
from flexiai_django.breakers import get_store
from flexiai_django.breakers.state import Admission
from flexiai_django.chain import Walk, arecord, record, success_of
from flexiai_django.chat_types import (
    Attempt,
    ChatRequest,
    ChatResult,
    Choice,
    Completion,
    StreamDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from flexiai_django.errors import ProviderError, StreamInterrupted
from flexiai_django.provider_cache import aget_providers, get_providers
from flexiai_django.providers import get_adapter
from flexiai_django.providers.base import ProviderAdapter, ProviderConfig
from flexiai_django.providers.clients import async_client, sync_client

logger = logging.getLogger("flexiai_django")


class _Answer:
    """One answer being streamed: its text, refusal, tool calls and finish, put together."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.refusal: list[str] = []
        self.calls: dict[int, list[str]] = {}  # index -> [id, name, arguments...]
        self.finish_reason: str | None = None

    def take(self, delta: StreamDelta) -> None:
        self.parts.append(delta.content)
        self.refusal.append(delta.refusal)
        for call in delta.tool_calls:
            parts = self.calls.setdefault(call.index, ["", ""])
            parts[0] = call.id or parts[0]
            parts[1] = call.name or parts[1]
            parts.append(call.arguments)
        self.finish_reason = delta.finish_reason or self.finish_reason

    def choice(self, index: int) -> Choice:
        calls = tuple(ToolCall(p[0], p[1], "".join(p[2:]) or "{}")
                      for _, p in sorted(self.calls.items()))
        return Choice(index, "".join(self.parts), self.finish_reason or "stop", calls,
                      "".join(self.refusal) or None)


class _StreamState:
    """What a stream knows about itself; filled in as it goes, complete once it ends."""

    def __init__(self, walk: Walk, provider: ProviderConfig | None,
                 admission: Admission | None, head: list[StreamDelta]) -> None:
        self.walk = walk
        self.provider = provider
        self.admission = admission
        self.head = head
        self.answers: dict[int, _Answer] = {0: _Answer()}  # by choice, for n > 1
        # The model the provider names in its first events, so every chunk says the same.
        self.model: str | None = next((d.model for d in head if d.model),
                                      provider.model if provider else None)
        self.usage = Usage()
        self.result: ChatResult | None = None
        self.first_chunk_after = time.monotonic() - walk.attempt_started

    def take(self, delta: StreamDelta) -> StreamDelta:
        self.answers.setdefault(delta.choice, _Answer()).take(delta)
        if delta.usage is not None:
            self.usage = Usage(self.usage.prompt_tokens + delta.usage.prompt_tokens,
                               self.usage.completion_tokens + delta.usage.completion_tokens)
        return delta

    def abandoned_verdict(self) -> bool | None:
        """What a stream its caller left mid-way proves: a closed breaker's stream worked
        so far (a success), but a half-open probe must finish to close the breaker, so an
        abandoned probe has no verdict (its slot is freed and the next call probes)."""
        assert self.admission is not None
        return None if self.admission.probe else True

    def completion(self) -> Completion:
        first, *more = (a.choice(i) for i, a in sorted(self.answers.items()))
        return Completion(first.content, self.model or "", first.finish_reason, self.usage,
                          tool_calls=first.tool_calls, refusal=first.refusal, more=tuple(more))

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
    def dropped(self) -> tuple[str, ...]:
        """Request fields the serving provider could not carry and was sent without."""
        provider = self._state.provider
        return self._state.walk.dropped.get(provider.name, ()) if provider else ()

    @property
    def result(self) -> ChatResult | None:
        """The whole answer, once the stream has ended."""
        return self._fallback or self._state.result

    def __iter__(self) -> Iterator[str]:
        """The answer's text, piece by piece."""
        for delta in self.deltas():
            if delta.content:
                yield delta.content

    def deltas(self) -> Iterator[StreamDelta]:
        """Every piece of the answer: text, tool-call pieces, refusal, finish and usage."""
        if self._fallback is not None:
            yield _whole(self._fallback)
            return
        state, store = self._state, get_store()
        assert state.provider and state.admission and self._deltas is not None
        try:
            for delta in chain(state.head, self._deltas):
                yield state.take(delta)
        except ProviderError as exc:
            record(store, state.provider, state.admission, False, StreamInterrupted.kind)
            raise state.interrupted(exc) from None
        except GeneratorExit:
            state.walk.aborted(state.provider)
            record(store, state.provider, state.admission, state.abandoned_verdict())
            raise
        record(store, state.provider, state.admission, True)
        cache_tier.remember(state.walk.request, state.provider.name, state.completion())
        state.finish()


def _whole(result: ChatResult) -> StreamDelta:
    """A fallback tier's answer as the one piece of its stream."""
    calls = tuple(ToolCallDelta(i, c.id, c.name, c.arguments)
                  for i, c in enumerate(result.tool_calls))
    return StreamDelta(content=result.content, tool_calls=calls,
                       finish_reason=result.finish_reason)


class AsyncChatStream(ChatStream):
    """The async twin of :class:`ChatStream`: ``async for piece in stream``."""

    def __init__(self, state: _StreamState, deltas: AsyncIterator[StreamDelta] | None,
                 fallback: ChatResult | None = None) -> None:
        super().__init__(state, None, fallback)
        self._adeltas = deltas

    def __iter__(self) -> Iterator[str]:
        raise TypeError("use 'async for' on an async stream")

    async def __aiter__(self) -> AsyncIterator[str]:
        async for delta in self.adeltas():
            if delta.content:
                yield delta.content

    def deltas(self) -> Iterator[StreamDelta]:
        raise TypeError("use 'async for' on an async stream")

    async def adeltas(self) -> AsyncIterator[StreamDelta]:
        """:meth:`ChatStream.deltas` for ``async for``."""
        if self._fallback is not None:
            yield _whole(self._fallback)
            return
        state, store = self._state, get_store()
        assert state.provider and state.admission and self._adeltas is not None
        try:
            for delta in state.head:
                yield state.take(delta)
            async for delta in self._adeltas:
                yield state.take(delta)
        except ProviderError as exc:
            await arecord(store, state.provider, state.admission, False, StreamInterrupted.kind)
            raise state.interrupted(exc) from None
        except (GeneratorExit, asyncio.CancelledError):  # the client went away mid-stream
            state.walk.aborted(state.provider)
            await arecord(store, state.provider, state.admission, state.abandoned_verdict())
            raise
        await arecord(store, state.provider, state.admission, True)
        cache_tier.remember_soon(state.walk.request, state.provider.name, state.completion())
        state.finish()


def _head(deltas: Iterator[StreamDelta]) -> list[StreamDelta]:
    """Pull deltas up to the first with part of the answer (or the end): the point of no
    failover."""
    head = []
    for delta in deltas:
        head.append(delta)
        if delta.substantive or delta.final:
            break
    return head


async def _ahead(deltas: AsyncIterator[StreamDelta]) -> list[StreamDelta]:
    head = []
    async for delta in deltas:
        head.append(delta)
        if delta.substantive or delta.final:
            break
    return head


def open_stream(request: ChatRequest) -> ChatStream:
    walk, store = Walk(request), get_store()
    for provider in walk.candidates(get_providers()):
        adapter = get_adapter(provider)
        admission = walk.admit(store, provider, adapter)
        if admission is None:
            continue
        deltas = adapter.stream(sync_client(provider.name), request)
        try:
            head = _head(deltas)
        except ProviderError as exc:
            record(store, provider, admission, success_of(exc), exc.kind)
            walk.failed(provider, exc)
            continue
        except BaseException:
            walk.aborted(provider)
            record(store, provider, admission, None)
            raise
        return ChatStream(_StreamState(walk, provider, admission, head), deltas)
    result = walk.fallback(cache_tier.recall(request))
    return ChatStream(_StreamState(walk, None, None, []), None, result)


async def aopen_stream(request: ChatRequest) -> AsyncChatStream:
    if hedging.hedged(request):
        return await _ahedged_stream(request)
    walk, store = Walk(request), get_store()
    for provider in walk.candidates(await aget_providers()):
        adapter = get_adapter(provider)
        admission = await walk.aadmit(store, provider, adapter)
        if admission is None:
            continue
        deltas = adapter.astream(async_client(provider.name), request)
        try:
            head = await _ahead(deltas)
        except ProviderError as exc:
            await arecord(store, provider, admission, success_of(exc), exc.kind)
            walk.failed(provider, exc)
            continue
        except BaseException:
            walk.aborted(provider)
            await arecord(store, provider, admission, None)
            raise
        return AsyncChatStream(_StreamState(walk, provider, admission, head), deltas)
    result = walk.fallback(await cache_tier.arecall(request))
    return AsyncChatStream(_StreamState(walk, None, None, []), None, result)


#: A stream opened up to its first piece: the rest of its deltas, and the head.
_Opened = tuple[AsyncIterator[StreamDelta], list[StreamDelta]]


async def _ahedged_stream(request: ChatRequest) -> AsyncChatStream:
    """:func:`aopen_stream` for a hedged alias: :func:`hedging.race` runs the attempts,
    each up to its first piece of the answer."""
    walk = Walk(request)

    async def start(provider: ProviderConfig, adapter: ProviderAdapter) -> _Opened:
        deltas = adapter.astream(async_client(provider.name), request)
        try:
            return deltas, await _ahead(deltas)
        except BaseException:  # cancelled: close the upstream connection now
            await _aclose(deltas)
            raise

    async def discard(opened: _Opened) -> None:
        await _aclose(opened[0])

    won = await hedging.race(walk, get_store(), await aget_providers(), start, streamed=True,
                             discard=discard)
    if won is None:
        result = walk.fallback(await cache_tier.arecall(request))
        return AsyncChatStream(_StreamState(walk, None, None, []), None, result)
    deltas, head = won.value
    return AsyncChatStream(_StreamState(walk, won.provider, won.admission, head), deltas)


async def _aclose(deltas: AsyncIterator[StreamDelta]) -> None:
    close = getattr(deltas, "aclose", None)
    if close is not None:
        await close()
