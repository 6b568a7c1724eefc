"""Request latency before and during a frozen Redis (SIGSTOP), side by side in one run.

In this process: ``--concurrency`` (8) clients post to ``/v1/chat/completions`` through
Django's ASGI stack (Django's ``AsyncClient``), with the breaker store, the rate limiter
(every request counted), the hedge budget and the answer cache (every answer written)
on a throwaway ``redis-server`` with 0.25 s socket timeouts, and a fast
:class:`FakeUpstream`. Phase "before": ``--seconds`` (5) of load with Redis answering.
Phase "frozen": the server is sent SIGSTOP, the same load runs for ``--seconds``, then
SIGCONT. A frozen Redis accepts connections and answers nothing, so each command waits
out its timeout; the table shows how many requests did (over 200 ms) and what that does
to p50/p99, over the whole frozen phase and over the requests started 0.3 s or more
after the freeze (past those already waiting inside Redis when it froze). Redis is then
given time to be found again before the next round (``--rounds``, 2); the figures are
over all rounds. ``--quick``: one round of 1.5 s per phase.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import signal
import time

import _setup

SLOW = 0.2
#: Requests started this long after the freeze: past the ones caught inside Redis by it.
SETTLED = 0.3
BODY = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "hi"}]})


async def load(seconds: float, concurrency: int) -> list[tuple[int, float, float]]:
    """(status, latency, start) of each request, ``concurrency`` at a time."""
    from django.test import AsyncClient

    client = AsyncClient()
    results: list[tuple[int, float, float]] = []
    stop = time.monotonic() + seconds

    async def one_client() -> None:
        while time.monotonic() < stop:
            started = time.perf_counter()
            response = await client.post("/v1/chat/completions", BODY,
                                         content_type="application/json")
            results.append((response.status_code, time.perf_counter() - started, started))

    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    return results


def row(name: str, results: list[tuple[int, float, float]], seconds: float) -> list[str]:
    latencies = [latency * 1000 for _, latency, _ in results]
    figures = _setup.stats(latencies)
    failed = sum(1 for status, _, _ in results if status != 200)
    slow = sum(1 for latency in latencies if latency > SLOW * 1000)
    return [name, str(len(results)), f"{len(results) / seconds:.0f}", str(failed), str(slow),
            _setup.fmt(figures["p50"], 1), _setup.fmt(figures["p99"], 1),
            _setup.fmt(max(latencies), 1)]


async def run(pid: int, args: argparse.Namespace) -> None:
    from flexiai_django.ratelimit import get_limiter

    await load(1.0, args.concurrency)  # warm: connections, snapshots, breaker keys
    # Django, the fake upstream and the load all live in this process: a full collection
    # over that heap stalls every request for ~250 ms, which would blur the comparison.
    gc.collect()
    gc.freeze()
    before: list[tuple[int, float, float]] = []
    during: list[tuple[int, float, float]] = []
    settled: list[tuple[int, float, float]] = []
    for _ in range(args.rounds):
        before += await load(args.seconds, args.concurrency)
        os.kill(pid, signal.SIGSTOP)
        frozen_at = time.perf_counter()
        try:
            this_round = await load(args.seconds, args.concurrency)
            during += this_round
            settled += [r for r in this_round if r[2] > frozen_at + SETTLED]
            print("slow requests this round (start after the freeze, latency) in s:",
                  [(round(r[2] - frozen_at, 3), round(r[1], 3)) for r in this_round
                   if r[1] > SLOW])
        finally:
            os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + 10
        while not get_limiter().connected and time.monotonic() < deadline:
            await load(0.1, 1)  # requests bring the limiter back once a PING found Redis
    total = args.seconds * args.rounds
    _setup.print_table(
        "latency in ms, requests over 200 ms (= waited out a Redis timeout)",
        ["phase", "requests", "req/s", "failed", "over 200 ms", "p50", "p99", "max"],
        [row("before", before, total), row("Redis frozen", during, total),
         row(f"  started {SETTLED:.1f} s+ in", settled, total - SETTLED * args.rounds)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="1 round of 1.5 s per phase")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.rounds = 1.5, 1

    from flexiai_django.testing.redis_server import RedisServer

    server = RedisServer().start()  # our own: it is frozen, never a shared one
    try:
        os.environ["REDIS_URL"] = server.url
        os.environ["FLEXIAI_ANONYMOUS_LOOPBACK"] = "1"
        os.environ["FLEXIAI_JSON"] = json.dumps({
            "ANONYMOUS_RATE_LIMIT_PER_MINUTE": 1_000_000,  # counted in Redis, never refused
            "CACHE_ENABLED": True,
            "ACTIVE_PROBE_SECONDS": None,
        })
        upstream = _setup.setup(redis=True)
        logging.getLogger("flexiai_django.requests").setLevel(logging.WARNING)
        _setup.make_provider(upstream, "bench")
        _setup.print_header("frozen Redis: request latency before and during",
                            concurrency=args.concurrency, seconds=args.seconds,
                            rounds=args.rounds, socket_timeout="0.25 s")
        assert server.process is not None
        asyncio.run(run(server.process.pid, args))
    finally:
        server.close()


if __name__ == "__main__":
    main()
