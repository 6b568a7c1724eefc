"""Time to first token with 5 % slow primaries, hedging off and on, side by side.

In this process, against a :class:`FakeUpstream` on loopback, with the hedge budget and
the breakers in a throwaway ``redis-server`` (``RedisBreakerStore``): two provider pairs
on the same upstream, each a primary (priority 1) and a secondary (priority 2). The alias
``plain`` routes to one pair and is not hedged; ``hedged`` routes to the other and is in
``HEDGED_ALIASES`` (separate pairs, so each primary's window of times to first token
sees only its own mode's calls). Before every 20th request the primary's scope is armed
with ``first_token_delay`` (1 s) for one request, so 1 in 20 primary calls is slow.

``astream("hello", model=...)`` (time to the first text piece) and ``achat`` (time to
the answer), ``--concurrency`` (8) at a time, N per mode (400; ``--quick``: 100) in 5
interleaved rounds alternating which side goes first, after a warm-up of 50 fast calls
per pair (so the primary has a p95; until then ``HEDGE_DEFAULT_DELAY_SECONDS`` applies).
"extra calls" are the upstream requests beyond one per request (the hedges started),
read from the fake upstream's hit counters; won/lost/refused come from
``flexiai_hedges_total``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time
from typing import Any

import _setup

ROUNDS = 5
SLOW_EVERY = 20
WARM_UP = 50
PAIRS = {"plain": ("p-primary", "p-secondary"), "hedged": ("h-primary", "h-secondary")}
FLEXIAI = {
    "HEDGED_ALIASES": ["hedged"],
    "HEDGE_BUDGET": 0.1,
    "HEDGE_DEFAULT_DELAY_SECONDS": 0.5,
    "MODEL_ALIASES": {alias: list(pair) for alias, pair in PAIRS.items()},
    "CACHE_ENABLED": False,
    "DEGRADED_MESSAGE": None,
}


def _rounds(n: int) -> list[int]:
    base, extra = divmod(n, ROUNDS)
    return [base + (1 if i < extra else 0) for i in range(ROUNDS)]


class Batch:
    """``n`` requests of one alias and kind, ``concurrency`` at a time; 1 in 20 slow."""

    def __init__(self, upstream: Any, alias: str, streamed: bool, slow: float,
                 every: int) -> None:
        self.upstream, self.alias, self.streamed, self.slow = upstream, alias, streamed, slow
        self.every = every
        self.primary = PAIRS[alias][0]

    async def one(self, arm: bool) -> float:
        import flexiai_django

        if arm:
            self.upstream.set_fault(self.primary, first_token_delay=self.slow, times=1)
        start = time.perf_counter()
        if self.streamed:
            stream = await flexiai_django.astream("hello", model=self.alias)
            async for _ in stream:
                break
            first = time.perf_counter() - start
            async for _ in stream:
                pass
        else:
            result = await flexiai_django.achat("hello", model=self.alias)
            first = time.perf_counter() - start
            assert result.tier == "provider", result
        return first * 1000

    async def run(self, n: int, concurrency: int, offset: int, slow: bool = True) -> list[float]:
        gate = asyncio.Semaphore(concurrency)

        async def gated(i: int) -> float:
            async with gate:
                return await self.one(slow and (offset + i) % self.every == 0)

        return list(await asyncio.gather(*(gated(i) for i in range(n))))


def hedge_counts(provider: str) -> dict[str, float]:
    from prometheus_client import REGISTRY

    return {outcome: REGISTRY.get_sample_value(
        "flexiai_hedges_total", {"provider": provider, "outcome": outcome}) or 0.0
        for outcome in ("started", "won", "lost", "refused_budget")}


def hits(upstream: Any, alias: str) -> int:
    return sum(upstream.hits(name) for name in PAIRS[alias])


async def measure(upstream: Any, n: int, concurrency: int, slow: float,
                  every: int) -> list[list[str]]:
    rows = []
    for streamed in (True, False):
        kind = "stream" if streamed else "plain call"
        batches = {alias: Batch(upstream, alias, streamed, slow, every) for alias in PAIRS}
        for batch in batches.values():  # the primaries' p95, before any slow call
            await batch.run(WARM_UP, concurrency, 0, slow=False)
        samples: dict[str, list[float]] = {alias: [] for alias in PAIRS}
        calls = {alias: 0 for alias in PAIRS}
        before = hedge_counts(PAIRS["hedged"][1])
        done = 0
        for index, size in enumerate(_rounds(n)):
            order = list(PAIRS) if index % 2 == 0 else list(reversed(PAIRS))
            for alias in order:
                start_hits = hits(upstream, alias)
                samples[alias] += await batches[alias].run(size, concurrency, done)
                calls[alias] += hits(upstream, alias) - start_hits
            done += size
        after = hedge_counts(PAIRS["hedged"][1])
        counted = {k: int(after[k] - before[k]) for k in after}
        for alias in PAIRS:
            figures = _setup.stats(samples[alias])
            extra = calls[alias] - n
            rows.append([
                kind, "on" if alias == "hedged" else "off", str(n),
                str(len(range(0, n, every))), _setup.fmt(figures["p50"], 1),
                _setup.fmt(figures["p99"], 1), _setup.fmt(max(samples[alias]), 1),
                f"{extra} ({100 * extra / n:.1f} %)",
                (f"{counted['won']}/{counted['lost']}/{counted['refused_budget']}"
                 if alias == "hedged" else "-"),
            ])
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=400, help="requests per mode and kind")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--slow", type=float, default=1.0,
                        help="first_token_delay of the slow primary calls (s)")
    parser.add_argument("--slow-every", type=int, default=SLOW_EVERY,
                        help="1 primary call in this many is slow (20: 5 %%)")
    parser.add_argument("--quick", action="store_true", help="N / 4")
    args = parser.parse_args(argv)
    n = max(args.slow_every, args.n // 4 if args.quick else args.n)

    os.environ["FLEXIAI_JSON"] = json.dumps(FLEXIAI)
    os.environ.pop("REDIS_URL", None)  # a throwaway redis-server, never yours
    upstream = _setup.setup(redis=True)
    logging.getLogger("flexiai_django").setLevel(logging.ERROR)
    for primary, secondary in PAIRS.values():
        _setup.make_provider(upstream, primary, priority=1, timeout=10.0)
        _setup.make_provider(upstream, secondary, priority=2, timeout=10.0)
    from flexiai_django.breakers import get_store

    _setup.print_header(
        "time to first token with slow primaries, hedging off vs on",
        requests=n, concurrency=args.concurrency, slow=f"1 in {args.slow_every} at {args.slow:g}s",
        store=get_store().describe()["backend"], flexiai=FLEXIAI)
    rows = asyncio.run(measure(upstream, n, args.concurrency, args.slow, args.slow_every))
    _setup.print_table(
        "time to first token, ms (plain call: to the whole answer)",
        ["kind", "hedging", "requests", "slow", "p50", "p99", "max", "extra calls",
         "won/lost/refused"],
        rows)


if __name__ == "__main__":
    main()
