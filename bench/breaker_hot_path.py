"""What a CLOSED breaker adds to a successful call, in microseconds per call.

Sync: a trivial function called bare, through ``breaker("bench").call(fn)`` and through
the ``@breaker(...)`` decorator. Async: a trivial coroutine awaited bare, through
``acall`` and through the decorator. Plus the store's own ``acquire`` + ``record`` and
the per-call ``default_config()`` that ``Breaker.call`` rebuilds, to show where the time
goes. Every figure is the best of 5 repeats of N calls (``time.perf_counter_ns``), loop
overhead included in all rows alike; "added" is the row minus its bare row.

To keep a full run short, a path slow enough that N calls would take longer than
``--budget`` seconds (0.5 by default) is timed over fewer calls; the table says how many.

Then the same paths side by side on ``LocalBreakerStore`` and on
``RedisBreakerStore(url=...)`` against a throwaway ``redis-server`` started here: the
CLOSED success path (``acquire`` + ``record``, and ``Breaker(..., store=...).call(fn)``),
which the Redis store serves from its snapshot, and the two paths that do go to Redis
(one Lua call each): ``record(success=False)`` and ``acquire`` on a breaker with recent
failures; plus the async twins of the success and failure paths (the Redis store
decides on the event loop from its snapshot and runs Redis calls in a thread). The
server's ``INFO stats`` ``total_commands_processed`` is read before and after each row
(the INFO calls' own count subtracted) and shown per 1000 calls; it counts the commands
a Lua script runs inside Redis too, so the number of scripts run (``EVALSHA``/``EVAL``
calls, from ``INFO commandstats``) is shown next to it. One ``PING`` round trip is timed
for scale.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import _servers
import _setup

REPEATS = 5
CALIBRATION_CALLS = 1000  # also the warm-up


def _calls(n: int, calibration_ns: int, calibration_calls: int, budget: float) -> int:
    """N, or fewer when one repeat of N calls would take longer than ``budget`` seconds."""
    if budget <= 0:
        return n
    per_call_ns = max(calibration_ns / calibration_calls, 1e-3)
    return max(min(n, calibration_calls), min(n, int(budget * 1e9 / per_call_ns)))


def best_sync(
    loop: Callable[[int], None], n: int, budget: float, calibration: int = CALIBRATION_CALLS
) -> tuple[float, int]:
    """(best µs per call over REPEATS runs of ``loop(calls)``, calls)."""
    warm = min(n, calibration)
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
    loop: Callable[[int], Awaitable[None]], n: int, budget: float,
    calibration: int = CALIBRATION_CALLS,
) -> tuple[float, int]:
    async def run() -> tuple[float, int]:
        warm = min(n, calibration)
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


StoreRow = tuple[str, float, int, float, int, float, float]
SCRIPT_COMMANDS = ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_evalsha_ro", "cmdstat_eval_ro")


def measure_stores(
    n: int, budget: float, redis_url: str, calibration: int = CALIBRATION_CALLS
) -> tuple[list[StoreRow], float]:
    """Per path: (label, local µs, local calls, Redis µs, Redis calls, Redis commands and
    Lua scripts per 1000 calls), and one PING round trip in µs."""
    import redis

    from flexiai_django.breakers import Breaker, default_config
    from flexiai_django.breakers.memory import LocalBreakerStore
    from flexiai_django.breakers.redis_store import RedisBreakerStore
    from flexiai_django.breakers.state import State

    stores = {"local": LocalBreakerStore(), "redis": RedisBreakerStore(url=redis_url)}
    probe = redis.Redis.from_url(redis_url)

    def commands() -> tuple[int, int]:
        """(commands processed, Lua scripts run) so far."""
        total = int(probe.info("stats")["total_commands_processed"])
        stats = probe.info("commandstats")
        return total, sum(int(stats.get(c, {}).get("calls", 0)) for c in SCRIPT_COMMANDS)

    first, second = commands(), commands()
    info_cost = second[0] - first[0]  # what reading the counters adds to the count
    config = default_config()
    never_opens = default_config(failure_threshold=10**9)

    def fn() -> int:
        return 1

    def paths(store: Any) -> list[tuple[str, Callable[[int], Any], bool]]:
        """(label, loop, loop is a coroutine function)."""
        acquire, record = store.acquire, store.record
        aacquire, arecord = store.aacquire, store.arecord
        call = Breaker("bench-call", store=store).call

        def success_loop(n: int) -> None:
            for _ in range(n):
                admission = acquire("bench-ok", config)
                record("bench-ok", config, success=True, probe=admission.probe)

        def call_loop(n: int) -> None:
            for _ in range(n):
                call(fn)

        def failure_loop(n: int) -> None:
            for _ in range(n):
                record("bench-failing", never_opens, success=False, probe=False, error="x")

        def acquire_failing_loop(n: int) -> None:
            for _ in range(n):
                acquire("bench-failing", never_opens)

        async def asuccess_loop(n: int) -> None:
            for _ in range(n):
                admission = await aacquire("bench-ok", config)
                await arecord("bench-ok", config, success=True, probe=admission.probe)

        async def afailure_loop(n: int) -> None:
            for _ in range(n):
                await arecord("bench-failing", never_opens, success=False, probe=False,
                              error="x")

        return [
            ("CLOSED: store.acquire + store.record(success=True)", success_loop, False),
            ("CLOSED: Breaker(store=...).call(fn)", call_loop, False),
            ("store.record(success=False)", failure_loop, False),
            ("store.acquire, CLOSED with recent failures", acquire_failing_loop, False),
            ("async CLOSED: await aacquire + arecord(success=True)", asuccess_loop, True),
            ("async: await store.arecord(success=False)", afailure_loop, True),
        ]

    results: dict[str, list[tuple[float, int, float, float]]] = {}
    labels: list[str] = []
    for store in stores.values():
        # Sanity: CLOSED and succeeding, and the failing breaker stays CLOSED.
        assert Breaker("bench-call", store=store).call(fn) == 1
        for label, loop, is_async in paths(store):
            counted = [0]

            def counting(k: int, loop: Callable[[int], None] = loop,
                         counted: list[int] = counted) -> None:
                counted[0] += k
                loop(k)

            async def acounting(k: int, loop: Callable[[int], Awaitable[None]] = loop,
                                counted: list[int] = counted) -> None:
                counted[0] += k
                await loop(k)

            before = commands()
            if is_async:
                per_call, calls = best_async(acounting, n, budget, calibration)
            else:
                per_call, calls = best_sync(counting, n, budget, calibration)
            after = commands()
            sent = after[0] - before[0] - info_cost
            scripts = after[1] - before[1]
            results.setdefault(label, []).append(
                (per_call, calls, sent * 1000 / counted[0], scripts * 1000 / counted[0]))
            if label not in labels:
                labels.append(label)
        failing = store.get("bench-failing")
        assert failing.state is State.CLOSED and failing.failures > 0
        assert store.get("bench-ok").state is State.CLOSED

    pings = []
    for _ in range(5):
        start = time.perf_counter_ns()
        for _ in range(200):
            probe.ping()
        pings.append((time.perf_counter_ns() - start) / 200 / 1000)
    probe.close()
    rows: list[StoreRow] = []
    for label in labels:
        (local_us, local_calls, _, _), (redis_us, redis_calls, per_1000, lua) = results[label]
        rows.append((label, local_us, local_calls, redis_us, redis_calls, per_1000, lua))
    return rows, min(pings)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200_000, help="calls per measurement")
    parser.add_argument("--quick", action="store_true", help="N and budget / 10")
    parser.add_argument(
        "--budget", type=float, default=0.5,
        help="seconds one repeat may take: slow paths time fewer than N calls (0: no cap)",
    )
    parser.add_argument("--no-redis", action="store_true",
                        help="skip the LocalBreakerStore vs RedisBreakerStore comparison")
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
    if args.no_redis:
        return

    from flexiai_django.testing.redis_server import RedisServer

    _servers.exit_on_signals()  # stop the redis-server below on Ctrl-C or SIGTERM too
    server = RedisServer()
    try:
        server.start()
        # --quick: the Redis rows time a few hundred calls, not the usual 1000 minimum.
        calibration = 200 if args.quick else CALIBRATION_CALLS
        store_rows, ping_us = measure_stores(n, budget, server.url, calibration)
    finally:
        server.close()
    fmt = _setup.fmt
    _setup.print_table(
        "LocalBreakerStore vs RedisBreakerStore(url=<throwaway redis-server>), µs per call",
        ["path", "local µs", "calls", "redis µs", "calls", "cmds/1000 calls",
         "Lua scripts/1000 calls"],
        [(label, fmt(local_us), local_calls, fmt(redis_us), redis_calls, fmt(per_1000, 2),
          fmt(lua, 2))
         for label, local_us, local_calls, redis_us, redis_calls, per_1000, lua in store_rows],
    )
    print(f"(one redis-py PING round trip on loopback: {ping_us:.1f} µs. cmds counts what a "
          "script runs inside Redis too. Without a broadcast listener refreshing it, the "
          "Redis store re-reads a snapshot older than snapshot_ttl=1 s with one Lua call.)",
          flush=True)


if __name__ == "__main__":
    main()
