"""Hedged requests: when the first provider's first token is late, start the next one too.

For a model alias listed in ``HEDGED_ALIASES`` the async chain (``aopen_stream``,
``acomplete``) runs its attempts through :func:`race` instead of one after another:

* the first admitted provider starts; if it fails before the hedge delay, the chain goes
  on as usual (a transient failure is retried on the same provider, see
  :mod:`flexiai_django.retries`, then the next provider becomes the first);
* if it has produced nothing by the hedge delay (:func:`hedge_delay`: its recent p95 time
  to first token in this worker, ``HEDGE_DEFAULT_DELAY_SECONDS`` until it has
  :data:`MIN_SAMPLES` of them, never under :data:`FLOOR_SECONDS`) and the deployment's
  budget allows (:mod:`flexiai_django.hedge_budget`), the next eligible provider is
  admitted through its breaker and started too: at most one hedge per request;
* the first to produce a token wins (a stream's first substantive piece, a plain call's
  whole answer) and the other is cancelled: its connection is closed, its breaker gets
  no verdict (a cancelled call says nothing about the provider; a half-open probe slot is
  freed), and it counts as a cancelled attempt (and a lost hedge, if it was the hedge).

An attempt that fails while the other one is still running is not retried (the other is
already the alternative); its ``Retry-After`` still cools the provider down.

The sync chain (``chat()``, ``stream()``) never hedges: a call blocking a thread cannot be
cancelled. A cancelled first provider's wait is noted as its time to first token (a lower
bound), so the slow calls hedging cuts short still weigh on its p95.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from flexiai_django import metrics, recent_calls
from flexiai_django.breakers.state import Admission
from flexiai_django.breakers.store import BreakerStore
from flexiai_django.chat_types import Attempt, ChatRequest
from flexiai_django.conf import get_settings
from flexiai_django.errors import ProviderError
from flexiai_django.hedge_budget import get_budget
from flexiai_django.process_local import PerProcess
from flexiai_django.providers import get_adapter
from flexiai_django.providers.base import ProviderAdapter, ProviderConfig
from flexiai_django.verdicts import arecord, success_of

if TYPE_CHECKING:
    from flexiai_django.walk import Walk

T = TypeVar("T")

#: Times to first token a provider needs in this worker before its p95 is trusted.
MIN_SAMPLES = 20
#: Never hedge sooner than this: below it a p95 is noise, and hedging is waste.
FLOOR_SECONDS = 0.05
QUANTILE = 0.95


def hedged(request: ChatRequest) -> bool:
    """Whether ``request`` names a model alias that hedges."""
    return bool(request.model) and request.model in get_settings().HEDGED_ALIASES


def hedge_delay(samples: Sequence[float], default: float) -> float:
    """Seconds to wait for a first token before hedging: the p95 (nearest rank) of
    ``samples``, or ``default`` while there are fewer than :data:`MIN_SAMPLES`; at least
    :data:`FLOOR_SECONDS`."""
    if len(samples) < MIN_SAMPLES:
        return max(FLOOR_SECONDS, default)
    ordered = sorted(samples)
    return max(FLOOR_SECONDS, ordered[math.ceil(QUANTILE * len(ordered)) - 1])


#: New times to first token after which a provider's hedge delay is worked out again:
#: sorting its recent times on every request cost about 50 µs (``bench/README.md``).
RECOMPUTE_EVERY = 8
#: Per provider and mode: (default, epoch, times noted) when its delay was worked out, and it.
_delays: PerProcess[dict[tuple[str, bool], tuple[tuple[float, int, int], float]]] = (
    PerProcess(dict))


def delay_for(provider: ProviderConfig, *, streamed: bool) -> float:
    """:func:`hedge_delay` from this worker's recent figures for ``provider``, kept until
    :data:`RECOMPUTE_EVERY` new ones came in (each new one while they are too few)."""
    stats = recent_calls.local()
    default = get_settings().HEDGE_DEFAULT_DELAY_SECONDS
    stamp = (default, *stats.first_tokens_noted(provider.name, streamed=streamed))
    delays = _delays.get()
    kept = delays.get((provider.name, streamed))
    if kept is not None and still_holds(kept[0], stamp):
        return kept[1]
    delay = hedge_delay(stats.first_token_times(provider.name, streamed=streamed), default)
    delays[(provider.name, streamed)] = (stamp, delay)
    return delay


def still_holds(kept: tuple[float, int, int], now: tuple[float, int, int]) -> bool:
    """Whether a delay worked out at ``kept`` (default, epoch, times noted) holds at
    ``now``: same default and epoch, and no new time, or a few new ones out of enough."""
    if kept[:2] != now[:2] or now[2] < kept[2]:
        return False
    new = now[2] - kept[2]
    return new == 0 or (kept[2] >= MIN_SAMPLES and new < RECOMPUTE_EVERY)


@dataclass(frozen=True)
class Won(Generic[T]):
    """The race's winner: the provider, its breaker admission, and what it produced."""

    provider: ProviderConfig
    admission: Admission
    value: T


@dataclass(frozen=True)
class _Run(Generic[T]):
    """One attempt in flight."""

    provider: ProviderConfig
    admission: Admission
    task: asyncio.Task[T]
    started: float
    hedge: bool


Start = Callable[[ProviderConfig, ProviderAdapter], Coroutine[Any, Any, T]]


async def race(
    walk: Walk,
    store: BreakerStore,
    candidates: Iterable[ProviderConfig],
    start: Start[T],
    *,
    streamed: bool,
    discard: Callable[[T], Awaitable[None]] | None = None,
) -> Won[T] | None:
    """Walk ``candidates`` (the chain, in order) for ``walk.request`` with one hedge
    allowed (see the module doc).

    ``start(provider, adapter)`` makes one attempt and returns once it has its first
    token (raising a :class:`ProviderError` if it fails); ``discard`` releases the value
    of a loser that finished anyway (an opened stream). Returns None when no provider
    answered (the caller goes on to the fallback tiers); raises like the chain does
    (a request error stops it). On return no attempt is left running.
    """
    return await _Race(walk, store, candidates, start, streamed, discard).run()


class _Race(Generic[T]):
    def __init__(self, walk: Walk, store: BreakerStore, candidates: Iterable[ProviderConfig],
                 start: Start[T], streamed: bool,
                 discard: Callable[[T], Awaitable[None]] | None) -> None:
        self.walk, self.store, self.start = walk, store, start
        self.streamed, self.discard = streamed, discard
        self.queue = deque(candidates)
        self.running: list[_Run[T]] = []
        self.latest: _Run[T] | None = None  # the last attempt started (the walk's retries)

    async def run(self) -> Won[T] | None:
        budget = get_budget()
        if budget.count():
            await budget.aship()
        hedge_at: float | None = None
        decided = False  # whether this request's one hedge decision was made
        try:
            while True:
                if not self.running:
                    first = await self._launch(hedge=False)
                    if first is None:
                        return None
                    if not decided:
                        hedge_at = first.started + delay_for(first.provider,
                                                             streamed=self.streamed)
                wait = None if hedge_at is None else max(0.0, hedge_at - time.monotonic())
                done, _ = await asyncio.wait([r.task for r in self.running], timeout=wait,
                                             return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    hedge_at, decided = None, True
                    await self._hedge()
                    continue
                won = await self._settle(done)
                if won is not None:
                    return won
        except BaseException as exc:
            runs, self.running = self.running, []
            aborted = bool(runs) and not isinstance(exc, ProviderError)  # cancelled, or a bug
            if aborted:
                self.walk.aborted(runs[0].provider)  # before any await: it reads the exception
            await self._drop(runs, counted=int(aborted), lower_bound=False)
            raise

    async def _launch(self, *, hedge: bool) -> _Run[T] | None:
        """Start the next provider its breaker admits, or None when none is left."""
        while self.queue:
            provider = self.queue.popleft()
            adapter = get_adapter(provider)
            admission = await self.walk.aadmit(self.store, provider, adapter)
            if admission is not None:
                return self._start(provider, admission, hedge=hedge, adapter=adapter)
        return None

    def _start(self, provider: ProviderConfig, admission: Admission, *, hedge: bool,
               adapter: ProviderAdapter | None = None) -> _Run[T]:
        task = asyncio.create_task(self.start(provider, adapter or get_adapter(provider)),
                                   name=f"flexiai-attempt:{provider.name}")
        run = self.latest = _Run(provider, admission, task, time.monotonic(), hedge)
        self.running.append(run)
        return run

    async def _hedge(self) -> None:
        """The first token is late: start the next provider if the budget allows."""
        if not self.queue:
            return
        if not await get_budget().aallow():
            metrics.hedged(self.queue[0].name, "refused_budget")
            return
        run = await self._launch(hedge=True)
        if run is not None:
            metrics.hedged(run.provider.name, "started")

    async def _settle(self, done: set[asyncio.Task[T]]) -> Won[T] | None:
        """Deal with the attempts that ended: failures are recorded (the chain goes on);
        the first answer wins and every other attempt is dropped."""
        ended = [r for r in self.running if r.task in done]
        self.running = [r for r in self.running if r.task not in done]
        winner: _Run[T] | None = None
        extra: list[_Run[T]] = []
        try:
            for run in ended:
                # Only this module cancels an attempt; one that ended cancelled anyway is
                # treated like the sequential chain treats it: the request is cancelled.
                exc = asyncio.CancelledError() if run.task.cancelled() else run.task.exception()
                if exc is None:
                    if winner is None:
                        winner = run
                    else:
                        extra.append(run)
                elif isinstance(exc, ProviderError):
                    again = await self._failed(run, exc)
                    if again is not None:
                        self._start(run.provider, again, hedge=False)
                else:
                    self.running.insert(0, run)  # the handler in run() counts it as aborted
                    raise exc
        except BaseException:  # the chain stops: answers that came at once are released too
            self.running += [r for r in ended
                             if not r.task.cancelled() and r.task.exception() is None]
            raise
        if winner is None:
            return None
        losers, self.running = [*extra, *self.running], []
        await self._drop(losers, counted=0, lower_bound=True)
        if winner.hedge:
            metrics.hedged(winner.provider.name, "won")
        self.walk.attempt_started = winner.started  # the winner's latency, from its start
        return Won(winner.provider, winner.admission, winner.task.result())

    async def _failed(self, run: _Run[T], exc: ProviderError) -> Admission | None:
        """Record a failed attempt; the admission for a retry on the same provider when it
        was the only attempt running and is worth another try (after the backoff)."""
        if run.hedge:
            metrics.hedged(run.provider.name, "lost")
        self.walk.attempt_started = run.started
        await arecord(self.store, run.provider, run.admission, success_of(exc), exc.kind)
        self.walk.failed(run.provider, exc)  # raises when the chain must stop
        if not self.running and run is self.latest:
            again = await self.walk.aagain(self.store, run.provider, exc)
            if again is None:
                self.walk.release(run.provider)
            return again
        self.walk.release(run.provider)
        if exc.retry_after is not None:
            await self.store.acool_down(run.provider.breaker_name, run.provider.breaker,
                                        exc.retry_after)
        return None

    async def _drop(self, runs: list[_Run[T]], *, counted: int, lower_bound: bool) -> None:
        """Cancel ``runs`` and wait for them to end (their connections closed): no verdict,
        a cancelled attempt each (the first ``counted`` were already counted as aborted)."""
        for run in runs:
            run.task.cancel()
            self.walk.release(run.provider)
        await _wait_out([run.task for run in runs])
        for i, run in enumerate(runs):
            if not run.task.cancelled():
                exc = run.task.exception()  # retrieved, so asyncio does not log it
                if exc is None and self.discard is not None:
                    await self.discard(run.task.result())
            self.walk.trail.append(Attempt(run.provider.name, "cancelled"))
            if i >= counted:
                metrics.cancelled(run.provider.name)
            if run.hedge:
                metrics.hedged(run.provider.name, "lost")
            elif lower_bound:
                recent_calls.local().first_token(
                    run.provider.name, time.monotonic() - run.started, streamed=self.streamed)
            await arecord(self.store, run.provider, run.admission, None)  # frees a probe


async def _wait_out(tasks: list[asyncio.Task[Any]]) -> None:
    """Wait until every task has ended, even if this one is cancelled meanwhile (then
    re-raise): no attempt outlives the request."""
    pending = {t for t in tasks if not t.done()}
    cancelled = False
    while pending:
        try:
            _, pending = await asyncio.wait(pending)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError

