"""One answer as it streams: its pieces, what it knows about itself, and its continuation.

:class:`ChatStream` / :class:`AsyncChatStream` carry a provider's remaining pieces once
:mod:`flexiai_django.streams` has opened it (past the point of no failover), record the
outcome in its breaker when it ends, and continue it on the next provider when it breaks
mid-answer (:mod:`.stream_resume`, :mod:`.continuation`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import weakref
from collections.abc import AsyncIterator, Iterator, Sequence
from itertools import chain

from flexiai_django import cache_tier, continuation, metrics, stream_resume
from flexiai_django.breakers import get_store
from flexiai_django.breakers.state import Admission
from flexiai_django.chat_types import (
    Attempt,
    ChatResult,
    Choice,
    Completion,
    StreamDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from flexiai_django.conf import get_settings
from flexiai_django.errors import ProviderError, StreamInterrupted
from flexiai_django.providers.base import ProviderConfig
from flexiai_django.verdicts import arecord, record
from flexiai_django.walk import Walk

logger = logging.getLogger("flexiai_django")


class Answer:
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


class StreamState:
    """What a stream knows about itself; filled in as it goes, complete once it ends."""

    def __init__(self, walk: Walk, provider: ProviderConfig | None,
                 admission: Admission | None, head: list[StreamDelta],
                 candidates: Sequence[ProviderConfig] = ()) -> None:
        self.walk = walk
        #: The request's chain, in order: where a continuation is looked for.
        self.candidates = candidates
        #: Providers whose broken streams this answer continues, in order.
        self.continued_from: list[str] = []
        self.seam: continuation.Seam | None = None
        self.provider = provider
        self.admission = admission
        self.head = head
        self.answers: dict[int, Answer] = {0: Answer()}  # by choice, for n > 1
        # The model the provider names in its first events, so every chunk says the same.
        self.model: str | None = next((d.model for d in head if d.model),
                                      provider.model if provider else None)
        self.usage = Usage()
        #: The part of ``usage`` the provider writing now reported (each provider of a
        #: continued answer is accounted for its own part).
        self.own_usage = Usage()
        self.result: ChatResult | None = None
        self.first_chunk_after = time.monotonic() - walk.attempt_started

    def take(self, delta: StreamDelta) -> StreamDelta:
        if self.seam is not None and not self.seam.decided:
            text = self.seam.feed(delta.content)
            if delta.finish_reason or delta.final:
                text += self.seam.close()
            if text != delta.content:  # its logprobs no longer match its text
                delta = dataclasses.replace(delta, content=text, logprobs=None)
        self.answers.setdefault(delta.choice, Answer()).take(delta)
        if delta.usage is not None:
            self.usage += delta.usage
            self.own_usage += delta.usage
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

    def not_continued(self) -> str | None:
        """Why the broken answer cannot be continued (see
        :func:`flexiai_django.continuation.not_continuable`), or None when it can."""
        if not get_settings().CONTINUE_STREAMS:
            return "continuation is off"
        answer = self.answers[0]
        return continuation.not_continuable(self.walk.request, tool_calls=bool(answer.calls),
                                            refusal=any(answer.refusal))

    @property
    def sent(self) -> str:
        """The answer's text so far, as the caller received it."""
        return "".join(self.answers[0].parts)

    def resumed(self, to: stream_resume.Resumed[Iterator[StreamDelta]]
                | stream_resume.Resumed[AsyncIterator[StreamDelta]]) -> None:
        """Another provider now writes the rest of the answer."""
        assert self.provider is not None
        self.continued_from.append(self.provider.name)
        metrics.used(self.provider.name, self.own_usage.prompt_tokens,
                     self.own_usage.completion_tokens)
        self.own_usage = Usage()
        self.provider, self.admission = to.provider, to.admission
        self.seam = continuation.Seam(self.sent)
        self.model = next((d.model for d in to.head if d.model), to.provider.model)
        self.first_chunk_after = time.monotonic() - self.walk.attempt_started
        logger.info("provider %s continues the answer of %s", to.provider.name,
                    self.continued_from[-1], extra={"provider": to.provider.name})

    def interrupted(self, exc: ProviderError) -> None:
        assert self.provider is not None
        self.walk.release(self.provider)
        self.walk.trail.append(Attempt(self.provider.name, StreamInterrupted.kind))
        self.walk.observe(self.provider, ok=False)
        self.walk.traced(self.provider, StreamInterrupted.kind)
        metrics.attempt_failed(self.provider.name, StreamInterrupted.kind)
        metrics.request_failed(self.provider.name, "interrupted")
        logger.warning("provider %s stream interrupted: %s", self.provider.name, exc.kind,
                       extra={"provider": self.provider.name, "error": exc.kind})

    def broken(self, exc: ProviderError, why: str | None) -> StreamInterrupted:
        """The error that ends a stream no provider continues, saying why not."""
        assert self.provider is not None
        self.walk.ended(error=StreamInterrupted.kind)
        return StreamInterrupted(f"stream failed after it started ({exc.kind}); not "
                                 f"continued: {why or 'no provider could continue it'}",
                                 provider=self.provider.name)

    def finish(self) -> None:
        assert self.provider is not None
        completion = self.completion()
        if not self.continued_from:
            self.result = self.walk.answered(self.provider, completion, self.first_chunk_after)
            self.walk.ended(self.result)
            return
        own = dataclasses.replace(completion, usage=self.own_usage)  # accounted to this one
        result = self.walk.answered(self.provider, own, self.first_chunk_after)
        self.result = dataclasses.replace(result, usage=self.usage,
                                          continued_from=tuple(self.continued_from))
        self.walk.ended(self.result)


class ChatStream:
    """Text pieces of one answer; ``provider``, ``tier`` and ``model`` are known before the first.

    Failover has already happened by the time this object exists, so errors that leave
    no provider raise from :func:`flexiai_django.stream` itself, not mid-iteration.
    """

    def __init__(self, state: StreamState, deltas: Iterator[StreamDelta] | None,
                 fallback: ChatResult | None = None) -> None:
        self._state = state
        self._deltas = deltas
        self._fallback = fallback
        if state.walk.slots:  # a stream dropped unread frees its in-flight slot too
            weakref.finalize(self, state.walk.slots.release_all, soon=True).atexit = False

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
    def trail(self) -> tuple[Attempt, ...]:
        """The attempts made so far (up to the first piece, then any continuation)."""
        return tuple(self._state.walk.trail)

    @property
    def dropped(self) -> tuple[str, ...]:
        """Request fields the serving provider could not carry and was sent without."""
        provider = self._state.provider
        return self._state.walk.dropped.get(provider.name, ()) if provider else ()

    @property
    def result(self) -> ChatResult | None:
        """The whole answer, once the stream has ended."""
        return self._fallback or self._state.result

    @property
    def continued_from(self) -> tuple[str, ...]:
        """Providers whose broken streams this answer continues, in order (``provider``
        names the one writing now); empty while one provider writes it all."""
        return tuple(self._state.continued_from)

    def __iter__(self) -> Iterator[str]:
        """The answer's text, piece by piece."""
        for delta in self.deltas():
            if delta.content:
                yield delta.content

    def deltas(self) -> Iterator[StreamDelta]:
        """Every piece of the answer: text, tool-call pieces, refusal, finish and usage.

        A provider that fails mid-answer counts as a failure in its breaker, and the next
        provider of the chain that can gives the rest. :class:`StreamInterrupted` (saying
        why) is raised instead when ``CONTINUE_STREAMS`` is off, no provider is left, or
        the answer is not one text (:func:`flexiai_django.continuation.not_continuable`).
        """
        if self._fallback is not None:
            yield whole(self._fallback)
            return
        try:
            yield from self._pieces()
        finally:
            self._state.walk.slots.release_all()

    def _pieces(self) -> Iterator[StreamDelta]:
        state, store = self._state, get_store()
        assert state.provider and state.admission and self._deltas is not None
        pieces: Iterator[StreamDelta] = chain(state.head, self._deltas)
        while True:
            try:
                for delta in pieces:
                    yield state.take(delta)
                break
            except ProviderError as exc:
                record(store, state.provider, state.admission, False, StreamInterrupted.kind)
                state.interrupted(exc)
                why = state.not_continued()
                resumed = None if why else stream_resume.resume(
                    state.walk, store, state.candidates, state.sent, head_of)
                if resumed is None:
                    raise state.broken(exc, why) from None
                state.resumed(resumed)
                pieces = chain(resumed.head, resumed.deltas)
            except GeneratorExit:
                state.walk.abandon(store, state.provider, state.admission,
                                   state.abandoned_verdict())
                state.walk.ended(error="aborted")
                raise
        record(store, state.provider, state.admission, True)
        cache_tier.remember(state.walk.request, state.provider.name, state.completion())
        state.finish()


def whole(result: ChatResult) -> StreamDelta:
    """A fallback tier's answer as the one piece of its stream."""
    calls = tuple(ToolCallDelta(i, c.id, c.name, c.arguments)
                  for i, c in enumerate(result.tool_calls))
    return StreamDelta(content=result.content, tool_calls=calls,
                       finish_reason=result.finish_reason)


class AsyncChatStream(ChatStream):
    """The async twin of :class:`ChatStream`: ``async for piece in stream``."""

    def __init__(self, state: StreamState, deltas: AsyncIterator[StreamDelta] | None,
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
            yield whole(self._fallback)
            return
        try:
            async for delta in self._apieces():
                yield delta
        finally:
            self._state.walk.slots.release_all(soon=True)

    async def _apieces(self) -> AsyncIterator[StreamDelta]:
        state, store = self._state, get_store()
        assert state.provider and state.admission and self._adeltas is not None
        head, rest = state.head, self._adeltas
        while True:
            try:
                for delta in head:
                    yield state.take(delta)
                async for delta in rest:
                    yield state.take(delta)
                break
            except ProviderError as exc:
                await arecord(store, state.provider, state.admission, False,
                              StreamInterrupted.kind)
                state.interrupted(exc)
                why = state.not_continued()
                resumed = None if why else await stream_resume.aresume(
                    state.walk, store, state.candidates, state.sent, ahead)
                if resumed is None:
                    raise state.broken(exc, why) from None
                state.resumed(resumed)
                head, rest = resumed.head, resumed.deltas
            except (GeneratorExit, asyncio.CancelledError):  # the client went away mid-stream
                await state.walk.aabandon(store, state.provider, state.admission,
                                          state.abandoned_verdict())
                state.walk.ended(error="aborted")
                raise
        await arecord(store, state.provider, state.admission, True)
        cache_tier.remember_soon(state.walk.request, state.provider.name, state.completion())
        state.finish()


def head_of(deltas: Iterator[StreamDelta]) -> list[StreamDelta]:
    """Pull deltas up to the first with part of the answer (or the end): the point of no
    failover."""
    head = []
    for delta in deltas:
        head.append(delta)
        if delta.substantive or delta.final:
            break
    return head


async def ahead(deltas: AsyncIterator[StreamDelta]) -> list[StreamDelta]:
    head = []
    async for delta in deltas:
        head.append(delta)
        if delta.substantive or delta.final:
            break
    return head
