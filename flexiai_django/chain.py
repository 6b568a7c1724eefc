"""The fallback chain for one plain call: providers in order → cached answer → degraded
message → 503.

Each attempt goes through the provider's breaker: an open breaker is skipped without
a network call; a provider failure is recorded and, unless it was transient and worth
another try on the same provider (:mod:`flexiai_django.retries`), the next provider is
tried; a request error (the caller's fault) stops the chain at once. The rules live in
:class:`~flexiai_django.walk.Walk` (one request's bookkeeping, shared with streams) and
:mod:`flexiai_django.fallback_tiers`; these are the loops, sync and async. An alias that
hedges runs its attempts in :mod:`flexiai_django.hedged_chain` instead.
"""

from __future__ import annotations

from flexiai_django import cache_tier, fallback_tiers, hedged_chain, hedging, tracing
from flexiai_django.breakers import get_store
from flexiai_django.chat_types import ChatRequest, ChatResult
from flexiai_django.errors import ProviderError
from flexiai_django.provider_cache import aget_providers, get_providers
from flexiai_django.providers import get_adapter
from flexiai_django.providers.clients import async_client, sync_client
from flexiai_django.verdicts import arecord, record
from flexiai_django.walk import Walk


def complete(request: ChatRequest) -> ChatResult:
    """The answer to ``request`` from the first provider that gives one, else from a
    fallback tier. Raises a request error, or :class:`NoProviderAvailable`."""
    with tracing.request_span(request) as span:
        result = _complete(request)
        tracing.request_done(span, result)
        return result


async def acomplete(request: ChatRequest) -> ChatResult:
    """:func:`complete` for async code; an alias listed in ``HEDGED_ALIASES`` hedges."""
    hedged = hedging.hedged(request)
    with tracing.request_span(request, hedged=hedged) as span:
        result = await (hedged_chain.acomplete(request) if hedged else _acomplete(request))
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
    return fallback_tiers.answer(walk, cache_tier.recall(request))


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
    return fallback_tiers.answer(walk, await cache_tier.arecall(request))
