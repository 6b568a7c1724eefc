"""Streams through the fallback chain: failover before the first chunk, continuation after.

:func:`open_stream` / :func:`aopen_stream` walk the chain until a provider yields its
first piece (the point of no failover); the :class:`ChatStream` they return carries that
provider's remaining pieces and records the outcome in its breaker when it ends. If the
provider breaks mid-answer, the stream is *continued*: the next provider of the chain is
asked for the rest (:mod:`.stream_resume`, :mod:`.continuation`) and its text follows
on, past a seam that drops what it repeats, so the caller reads one answer (see
:meth:`ChatStream.deltas` for when a stream is not continued).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator

from flexiai_django import cache_tier, fallback_tiers, hedging, tracing
from flexiai_django.breakers import get_store
from flexiai_django.chat_stream import AsyncChatStream, ChatStream, StreamState, ahead, head_of
from flexiai_django.chat_types import ChatRequest, StreamDelta
from flexiai_django.errors import ProviderError
from flexiai_django.provider_cache import aget_providers, get_providers
from flexiai_django.providers import get_adapter
from flexiai_django.providers.base import ProviderAdapter, ProviderConfig
from flexiai_django.providers.clients import async_client, sync_client
from flexiai_django.walk import Walk

logger = logging.getLogger("flexiai_django")


@contextlib.contextmanager
def _traced(walk: Walk, hedged: bool = False) -> Iterator[None]:
    """The stream's request span (tracing), ended here if opening it fails (its in-flight
    slots freed); the stream ends it when it does."""
    walk.span = tracing.stream_span(walk.request, hedged)
    try:
        yield
    except BaseException as exc:
        walk.slots.release_all(soon=True)
        walk.ended(error=exc)
        raise


def open_stream(request: ChatRequest) -> ChatStream:
    walk = Walk(request)
    with _traced(walk):
        return _open_stream(walk)


def _open_stream(walk: Walk) -> ChatStream:
    request, store = walk.request, get_store()
    candidates = walk.candidates(get_providers())
    for provider in candidates:
        adapter = get_adapter(provider)
        admission = walk.admit(store, provider, adapter)
        while admission is not None:  # retries happen only before the first piece
            deltas = adapter.stream(sync_client(provider.name), request)
            try:
                head = head_of(deltas)
            except ProviderError as exc:
                admission = walk.after_failure(store, provider, admission, exc)
                continue
            except BaseException:
                walk.abandon(store, provider, admission)
                raise
            return ChatStream(StreamState(walk, provider, admission, head, candidates),
                              deltas)
    result = fallback_tiers.answer(walk, cache_tier.recall(request))
    walk.ended(result)
    return ChatStream(StreamState(walk, None, None, []), None, result)


async def aopen_stream(request: ChatRequest) -> AsyncChatStream:
    walk, hedged = Walk(request), hedging.hedged(request)
    with _traced(walk, hedged):
        return await (_ahedged_stream(walk) if hedged else _aopen_stream(walk))


async def _aopen_stream(walk: Walk) -> AsyncChatStream:
    request, store = walk.request, get_store()
    candidates = await walk.acandidates(await aget_providers())
    for provider in candidates:
        adapter = get_adapter(provider)
        admission = await walk.aadmit(store, provider, adapter)
        while admission is not None:  # retries happen only before the first piece
            deltas = adapter.astream(async_client(provider.name), request)
            try:
                head = await ahead(deltas)
            except ProviderError as exc:
                admission = await walk.aafter_failure(store, provider, admission, exc)
                continue
            except BaseException:
                await walk.aabandon(store, provider, admission)
                raise
            state = StreamState(walk, provider, admission, head, candidates)
            return AsyncChatStream(state, deltas)
    result = fallback_tiers.answer(walk, await cache_tier.arecall(request))
    walk.ended(result)
    return AsyncChatStream(StreamState(walk, None, None, []), None, result)


#: A stream opened up to its first piece: the rest of its deltas, and the head.
_Opened = tuple[AsyncIterator[StreamDelta], list[StreamDelta]]


async def _ahedged_stream(walk: Walk) -> AsyncChatStream:
    """:func:`aopen_stream` for a hedged alias: :func:`hedging.race` runs the attempts,
    each up to its first piece of the answer. The winner's stream was opened in its
    attempt's task and is read on in the caller's: a time limit inside an adapter's
    stream must apply per read (``asyncio.timeout`` around each), not span its yields."""
    request = walk.request

    async def start(provider: ProviderConfig, adapter: ProviderAdapter) -> _Opened:
        deltas = adapter.astream(async_client(provider.name), request)
        try:
            return deltas, await ahead(deltas)
        except BaseException:  # cancelled: close the upstream connection now
            await _aclose(deltas)
            raise

    async def discard(opened: _Opened) -> None:
        await _aclose(opened[0])

    candidates = await walk.acandidates(await aget_providers())
    won = await hedging.race(walk, get_store(), candidates, start, streamed=True,
                             discard=discard)
    if won is None:
        result = fallback_tiers.answer(walk, await cache_tier.arecall(request))
        walk.ended(result)
        return AsyncChatStream(StreamState(walk, None, None, []), None, result)
    deltas, head = won.value
    state = StreamState(walk, won.provider, won.admission, head, candidates)
    return AsyncChatStream(state, deltas)


async def _aclose(deltas: AsyncIterator[StreamDelta]) -> None:
    close = getattr(deltas, "aclose", None)
    if close is not None:
        await close()
