"""Worker memory under a flood of bogus API keys: flat, because unknown keys are never kept.

``gunicorn -k uvicorn_worker.UvicornWorker -w 2`` (the README's production command) on a
throwaway Redis and SQLite, anonymous access off. Two phases on the same workers, each N
requests (20,000; ``--quick``: 4,000), C at a time (16), printing every worker's RSS at
each fifth:

1. ``GET /health/live``: the growth of ordinary traffic (allocator warm-up, logs);
2. ``POST /v1/chat/completions`` with a bogus ``Authorization`` header, half with an
   8 KB random prefix (refused by the format check, no lookup), half well formed but
   unknown (one database lookup each, nothing cached).

Before the fix the key cache kept every prefix it was asked about: 20,000 bogus 8 KB
prefixes grew two workers by about 200 MB with no plateau. Every bogus request must be
a 401.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import _servers
import _setup
import httpx

BODY = {"messages": [{"role": "user", "content": "hi"}]}


def worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return sorted(int(pid) for pid in children)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bogus_header(n: int) -> dict[str, str]:
    if n % 2:
        return {"Authorization": f"Bearer fxa-{secrets.token_hex(4096)}-x"}
    return {"Authorization": f"Bearer fxa-{secrets.token_hex(6)}-{secrets.token_urlsafe(32)}"}


async def flood(url: str, total: int, concurrency: int,
                send: Callable[[httpx.AsyncClient, int], Any],
                checkpoint: Callable[[int], None]) -> Counter[int]:
    statuses: Counter[int] = Counter()
    step = max(1, total // 5)
    sent = 0
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        while sent < total:
            batch = min(step, total - sent)
            queue = iter(range(sent, sent + batch))

            async def worker(numbers: Iterator[int]) -> None:
                for n in numbers:
                    response = await send(client, n)
                    statuses[response.status_code] += 1

            await asyncio.gather(*(worker(queue) for _ in range(concurrency)))
            sent += batch
            checkpoint(sent)
    return statuses


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000, help="requests per phase")
    parser.add_argument("-c", type=int, default=16, help="requests in flight")
    parser.add_argument("--quick", action="store_true", help="N / 5")
    args = parser.parse_args(argv)
    total = args.n // 5 if args.quick else args.n

    _servers.exit_on_signals()
    _setup.configure_django()
    _setup.print_header("worker memory under bogus API keys", requests=total,
                        concurrency=args.c, server="gunicorn -k uvicorn_worker.UvicornWorker -w 2")
    with contextlib.ExitStack() as stack:
        redis = _servers.start_redis(stack)
        env = _servers.site_env(redis.url)
        server = _servers.start_server(stack, env, workers=2)
        pids = worker_pids(server.process.pid)
        rows: list[list[str]] = []

        def checkpoint(phase: str) -> Callable[[int], None]:
            def take(done: int) -> None:
                rows.append([phase, f"{done:,}", *(f"{rss_mb(pid):.1f}" for pid in pids)])
            return take

        async def live(client: httpx.AsyncClient, n: int) -> httpx.Response:
            return await client.get("/health/live")

        async def bogus(client: httpx.AsyncClient, n: int) -> httpx.Response:
            return await client.post("/v1/chat/completions", json=BODY, headers=bogus_header(n))

        checkpoint("start")(0)
        asyncio.run(flood(server.url, total, args.c, live, checkpoint("/health/live")))
        baseline = [rss_mb(pid) for pid in pids]
        statuses = asyncio.run(flood(server.url, total, args.c, bogus, checkpoint("bogus keys")))
        after = [rss_mb(pid) for pid in pids]

    _setup.print_table("worker RSS (MB)", ["phase", "requests", *(f"worker {p}" for p in pids)],
                       rows)
    growth = [a - b for a, b in zip(after, baseline, strict=True)]
    print(f"\n  bogus-key phase: statuses {dict(statuses)}; RSS growth per worker "
          f"{', '.join(f'{g:+.1f} MB' for g in growth)} over {total:,} requests")


if __name__ == "__main__":
    main()
