"""What a CLOSED breaker adds to a successful call, in microseconds per call.

Sync: a trivial function called bare, through ``breaker("bench").call(fn)`` and through
the ``@breaker(...)`` decorator. Async: a trivial coroutine awaited bare, through
``acall`` and through the decorator. Plus the store's own ``acquire`` + ``record`` and
the per-call ``default_config()`` that ``Breaker.call`` rebuilds, to show where the time
goes. Every figure is the best of 5 repeats of N calls (``time.perf_counter_ns``), loop
overhead included in all rows alike; "added" is the row minus its bare row.

To keep a full run short, a path slow enough that N calls would take longer than
``--budget`` seconds (0.5 by default) is timed over fewer calls; the table says how many.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import _setup

REPEATS = 5
CALIBRATION_CALLS = 1000  # also the warm-up


def _calls(n: int, calibration_ns: int, calibration_calls: int, budget: float) -> int:
    """N, or fewer when one repeat of N calls would take longer than ``budget`` seconds."""
    if budget <= 0:
        return n
    per_call_ns = max(calibration_ns / calibration_calls, 1e-3)
    return max(min(n, calibration_calls), min(n, int(budget * 1e9 / per_call_ns)))


def best_sync(loop: Callable[[int], None], n: int, budget: float) -> tuple[float, int]:
    """(best µs per call over REPEATS runs of ``loop(calls)``, calls)."""
    warm = min(n, CALIBRATION_CALLS)
    start = time.perf_counter_ns()
    loop(warm)
    calls = _calls(n, time.perf_counter_ns() - start, warm, budget)
    best = None
    for _ in range(REPEATS):
        start = time.perf_counter_ns()
        loop(calls)
        elapsed = time.perf_counter_ns() - start
        best = elapsed if best is None else min(best, elapsed)
    assert best is not None
    return best / calls / 1000, calls


def best_async(
    loop: Callable[[int], Awaitable[None]], n: int, budget: float
) -> tuple[float, int]:
    async def run() -> tuple[float, int]:
        warm = min(n, CALIBRATION_CALLS)
        start = time.perf_counter_ns()
        await loop(warm)
        calls = _calls(n, time.perf_counter_ns() - start, warm, budget)
        best = None
        for _ in range(REPEATS):
            start = time.perf_counter_ns()
            await loop(calls)
            elapsed = time.perf_counter_ns() - start
            best = elapsed if best is None else min(best, elapsed)
        assert best is not None
        return best / calls / 1000, calls

    return asyncio.run(run())


Row = tuple[str, float, float | None, int]


def measure(n: int, budget: float) -> list[Row]:
    """(label, µs/call, added µs/call over the matching bare row or None, calls timed)."""
    from flexiai_django import breaker
    from flexiai_django.breakers import default_config, get_store
    from flexiai_django.breakers.state import State

    def fn() -> int:
        return 1

    async def afn() -> int:
        return 1

    guarded = breaker("bench")

    @breaker("bench-decorated")
    def decorated() -> int:
        return 1

    aguarded = breaker("bench-async")

    @breaker("bench-async-decorated")
    async def adecorated() -> int:
        return 1

    store = get_store()
    config = default_config()

    def bare_loop(n: int) -> None:
        for _ in range(n):
            fn()

    def call_loop(n: int) -> None:
        call = guarded.call
        for _ in range(n):
            call(fn)

    def decorated_loop(n: int) -> None:
        for _ in range(n):
            decorated()

    def store_loop(n: int) -> None:
        acquire, record = store.acquire, store.record
        for _ in range(n):
            admission = acquire("bench-store", config)
            record("bench-store", config, success=True, probe=admission.probe)

    def config_loop(n: int) -> None:
        for _ in range(n):
            default_config()

    async def abare_loop(n: int) -> None:
        for _ in range(n):
            await afn()

    async def acall_loop(n: int) -> None:
        acall = aguarded.acall
        for _ in range(n):
            await acall(afn)

    async def adecorated_loop(n: int) -> None:
        for _ in range(n):
            await adecorated()

    # Sanity: every breaker is CLOSED and every call succeeds.
    assert guarded.call(fn) == 1 and decorated() == 1
    assert asyncio.run(aguarded.acall(afn)) == 1 and asyncio.run(adecorated()) == 1

    bare, calls = best_sync(bare_loop, n, budget)
    rows: list[Row] = [("sync: fn() bare", bare, None, calls)]
    for label, loop in (
        ('sync: breaker("bench").call(fn)', call_loop),
        ("sync: @breaker decorated fn()", decorated_loop),
        ("sync: store.acquire + store.record", store_loop),
        ("sync: default_config() alone", config_loop),
    ):
        per_call, calls = best_sync(loop, n, budget)
        rows.append((label, per_call, per_call - bare, calls))

    abare, calls = best_async(abare_loop, n, budget)
    rows.append(("async: await afn() bare", abare, None, calls))
    for label, aloop in (
        ('async: await breaker("bench").acall(afn)', acall_loop),
        ("async: await @breaker decorated afn()", adecorated_loop),
    ):
        per_call, calls = best_async(aloop, n, budget)
        rows.append((label, per_call, per_call - abare, calls))

    for b in (guarded, aguarded):
        assert b.state.state is State.CLOSED
    assert store.get("bench-decorated").state is State.CLOSED
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200_000, help="calls per measurement")
    parser.add_argument("--quick", action="store_true", help="N and budget / 10")
    parser.add_argument(
        "--budget", type=float, default=0.5,
        help="seconds one repeat may take: slow paths time fewer than N calls (0: no cap)",
    )
    args = parser.parse_args(argv)
    n = max(1, args.n // 10 if args.quick else args.n)
    budget = args.budget / 10 if args.quick else args.budget

    _setup.configure_django()
    from flexiai_django.breakers import get_store

    _setup.print_header(
        "breaker hot path (CLOSED, success)",
        n=n, repeats=REPEATS, stat="best of repeats", budget_s=budget,
        store=type(get_store()).__name__,
    )
    rows = measure(n, budget)
    table: list[Any] = [
        (label, _setup.fmt(us), "" if added is None else _setup.fmt(added), calls)
        for label, us, added, calls in rows
    ]
    _setup.print_table(
        "per call (µs)", ["path", "µs/call", "added µs/call", "calls timed"], table
    )


if __name__ == "__main__":
    main()
