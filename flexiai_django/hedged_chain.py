"""The fallback chain for one plain async call to an alias that hedges.

The attempts are raced by :func:`flexiai_django.hedging.race` (the next provider starts
when the first is late; the first to answer wins) instead of tried one after another;
the winner is recorded, cached and answered as in :mod:`flexiai_django.chain`, and with
no winner the fallback tiers answer.
"""

from __future__ import annotations

from flexiai_django import cache_tier, fallback_tiers, hedging
from flexiai_django.breakers import get_store
from flexiai_django.chat_types import ChatRequest, ChatResult, Completion
from flexiai_django.provider_cache import aget_providers
from flexiai_django.providers.base import ProviderAdapter, ProviderConfig
from flexiai_django.providers.clients import async_client
from flexiai_django.verdicts import arecord
from flexiai_django.walk import Walk


async def acomplete(request: ChatRequest) -> ChatResult:
    """:func:`flexiai_django.chain.acomplete` for a hedged alias."""
    walk = Walk(request)
    try:
        return await _walk(walk)
    finally:
        walk.slots.release_all()


async def _walk(walk: Walk) -> ChatResult:
    request, store = walk.request, get_store()

    async def start(provider: ProviderConfig, adapter: ProviderAdapter) -> Completion:
        return await adapter.acomplete(async_client(provider.name), request)

    candidates = await walk.acandidates(await aget_providers())
    won = await hedging.race(walk, store, candidates, start, streamed=False)
    if won is None:
        return fallback_tiers.answer(walk, await cache_tier.arecall(request))
    await arecord(store, won.provider, won.admission, True)
    cache_tier.remember_soon(request, won.provider.name, won.value)
    return walk.answered(won.provider, won.value)
