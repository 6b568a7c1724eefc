"""Finding who continues a broken stream: the next providers of the chain, in order.

When a stream breaks after part of its answer reached the client, :mod:`.streams` calls
:func:`resume` (or :func:`aresume`) with the text sent so far. The chain is walked on
from there, as for any request: providers already tried for this request are left out,
each other one goes through its breaker (an open one is skipped), and the first that
starts answering the continuation request (:mod:`.continuation`) is handed back, its
first pieces read (so the caller can switch without another failover point). A target
that takes a prefill is sent one; if it refuses it as a bad request (some
OpenAI-compatible servers do), the same provider gets the instruction form instead,
within the same breaker admission. Each provider is tried once, so a request is continued
at most as many times as the chain has providers left.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from flexiai_django import continuation
from flexiai_django.breakers.state import Admission
from flexiai_django.breakers.store import BreakerStore
from flexiai_django.chat_types import StreamDelta
from flexiai_django.conf import get_settings
from flexiai_django.errors import BadRequest, ProviderError
from flexiai_django.providers import get_adapter
from flexiai_django.providers.base import ProviderConfig
from flexiai_django.providers.clients import async_client, sync_client
from flexiai_django.verdicts import arecord, record, success_of
from flexiai_django.walk import Walk

logger = logging.getLogger("flexiai_django")

Pieces = TypeVar("Pieces", Iterator[StreamDelta], AsyncIterator[StreamDelta])


@dataclass(frozen=True)
class Resumed(Generic[Pieces]):
    """The provider that continues the answer, admitted and already answering."""

    provider: ProviderConfig
    admission: Admission
    #: Its first pieces, up to the first with text (already read), then the rest.
    head: list[StreamDelta]
    deltas: Pieces
    continuation: continuation.Continuation


def untried(walk: Walk, candidates: Sequence[ProviderConfig]) -> list[ProviderConfig]:
    """The chain's providers this request has not met yet (tried, skipped or unfit)."""
    seen = {attempt.provider for attempt in walk.trail}
    return [p for p in candidates if p.name not in seen]


def _prefill_refused(exc: ProviderError, cont: continuation.Continuation) -> bool:
    """A 400 to a prefill (not a context-length refusal): the instruction form may pass."""
    return cont.prefill and type(exc) is BadRequest


def _gave_up(walk: Walk, provider: ProviderConfig, exc: ProviderError) -> bool:
    """Note the failed attempt; True when no other provider should be asked (a request
    error: the continuation request itself is refused, the answer stays broken)."""
    try:
        walk.failed(provider, exc)
    except ProviderError:
        return True
    return False


def _forms(prefill: bool) -> tuple[bool, ...]:
    return (True, False) if prefill else (False,)


def resume(walk: Walk, store: BreakerStore, candidates: Sequence[ProviderConfig], sent: str,
           first: Callable[[Iterator[StreamDelta]], list[StreamDelta]],
           ) -> Resumed[Iterator[StreamDelta]] | None:
    """The next provider answering the rest of the answer that starts with ``sent``, or
    None when none can. ``first`` reads a stream up to its first piece of answer (the
    caller's own, so its time limits apply here too)."""
    instruction = get_settings().CONTINUATION_INSTRUCTION
    for provider in untried(walk, candidates):
        adapter = get_adapter(provider)
        admission = walk.admit(store, provider, adapter)
        if admission is None:
            continue
        for prefill in _forms(adapter.prefill):
            cont = continuation.build(walk.request, sent, prefill=prefill,
                                      instruction=instruction)
            deltas = adapter.stream(sync_client(provider.name), cont.request)
            try:
                head = first(deltas)
            except ProviderError as exc:
                if _prefill_refused(exc, cont):
                    logger.info("provider %s refused a prefill; continuing by instruction",
                                provider.name, extra={"provider": provider.name})
                    continue
                record(store, provider, admission, success_of(exc), exc.kind)
                walk.release(provider)
                if _gave_up(walk, provider, exc):
                    return None
                break
            except BaseException:
                walk.abandon(store, provider, admission)
                raise
            return Resumed(provider, admission, head, deltas, cont)
    return None


async def aresume(walk: Walk, store: BreakerStore, candidates: Sequence[ProviderConfig],
                  sent: str,
                  first: Callable[[AsyncIterator[StreamDelta]], Awaitable[list[StreamDelta]]],
                  ) -> Resumed[AsyncIterator[StreamDelta]] | None:
    """:func:`resume` for async streams."""
    instruction = get_settings().CONTINUATION_INSTRUCTION
    for provider in untried(walk, candidates):
        adapter = get_adapter(provider)
        admission = await walk.aadmit(store, provider, adapter)
        if admission is None:
            continue
        for prefill in _forms(adapter.prefill):
            cont = continuation.build(walk.request, sent, prefill=prefill,
                                      instruction=instruction)
            deltas = adapter.astream(async_client(provider.name), cont.request)
            try:
                head = await first(deltas)
            except ProviderError as exc:
                if _prefill_refused(exc, cont):
                    logger.info("provider %s refused a prefill; continuing by instruction",
                                provider.name, extra={"provider": provider.name})
                    continue
                await arecord(store, provider, admission, success_of(exc), exc.kind)
                walk.release(provider)
                if _gave_up(walk, provider, exc):
                    return None
                break
            except BaseException:
                await walk.aabandon(store, provider, admission)
                raise
            return Resumed(provider, admission, head, deltas, cont)
    return None
