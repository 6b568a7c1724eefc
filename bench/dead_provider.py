"""Calls that reach a dead provider before the deployment stops sending, by worker count.

For 1, 2, 4 and 8 ``gunicorn -k uvicorn_worker.UvicornWorker`` workers (``--quick``: 1, 2,
4), each with a fresh throwaway ``redis-server`` (shared breaker state:
``RedisBreakerStore``, broadcast on a channels-redis group) and
``FLEXIAI_JSON={"FAILURE_THRESHOLD": 5, "OPEN_SECONDS": 300, "CACHE_ENABLED": false,
"DEGRADED_MESSAGE": null}``: the demo providers point at a :class:`FakeUpstream` in this
process whose scope ``demo-primary`` answers every request with HTTP 500. Then N requests
(200; ``--quick``: 100) ``POST /chat/direct`` on fresh connections, ``concurrency =
max(4, workers)`` at a time, and count the requests that reached ``demo-primary``
(``FakeUpstream.hits``). Every request should still answer 200 (from demo-secondary).

With one breaker for the deployment that count is the threshold (5) plus at most the
calls already admitted when the fifth failure was recorded (``concurrency - 1``); with a
breaker per worker it would be at least ``5 x workers``. Each worker count is repeated R
times (3; ``--quick``: 1) on the same server: between repeats the breaker is forced
CLOSED in Redis, and a repeat starts only once every worker has answered from
demo-primary again.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import _servers
import _setup
import httpx

THRESHOLD = 5
FLEXIAI = {"FAILURE_THRESHOLD": THRESHOLD, "OPEN_SECONDS": 300, "CACHE_ENABLED": False,
           "DEGRADED_MESSAGE": None}
PRIMARY = "demo-primary"


class Chatter:
    """POST /chat/direct on a fresh connection each time; one httpx client per thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()

    def __call__(self, _: Any = None) -> tuple[int, str, str]:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpx.Client(timeout=30)
        try:
            response = client.post(f"{self.url}/chat/direct", json={"message": "hi"},
                                   headers=_servers.CLOSE)
        except httpx.TransportError as exc:
            return 0, type(exc).__name__, ""
        body = response.json()
        return response.status_code, body.get("provider", ""), body.get("worker_id", "")


def wait_all_on_primary(chat: Chatter, workers: int, timeout: float = 60.0) -> int:
    """Chat until every worker has answered from demo-primary; returns requests sent."""
    deadline = time.monotonic() + timeout
    on_primary: set[str] = set()
    sent = 0
    while len(on_primary) < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(on_primary)} of {workers} workers back on primary")
        status, provider, worker = chat()
        sent += 1
        if status == 200 and provider == PRIMARY:
            on_primary.add(worker)
        else:
            time.sleep(0.05)
    return sent


def run_worker_count(
    upstream: Any, workers: int, repeats: int, total: int
) -> dict[str, Any]:
    from flexiai_django.breakers.redis_store import RedisBreakerStore
    from flexiai_django.breakers.state import State

    concurrency = max(4, workers)
    hits: list[int] = []
    statuses: Counter[int] = Counter()
    providers: Counter[str] = Counter()
    shared_states: set[str] = set()
    elapsed: list[float] = []
    with contextlib.ExitStack() as stack:
        redis_server = _servers.start_redis(stack)
        started = time.monotonic()
        server = _servers.start_server(
            stack, _servers.site_env(redis_server.url, **FLEXIAI), workers, timeout=180)
        boot = time.monotonic() - started
        store = RedisBreakerStore(url=redis_server.url)
        chat = Chatter(server.url)
        with ThreadPoolExecutor(concurrency) as pool:
            for repeat in range(repeats):
                upstream.clear_faults()
                if repeat:
                    store.force(_servers.BREAKER, State.CLOSED)
                wait_all_on_primary(chat, workers)
                before = upstream.hits(PRIMARY)
                upstream.set_fault(PRIMARY, status=500)
                began = time.monotonic()
                results = list(pool.map(chat, range(total)))
                elapsed.append(time.monotonic() - began)
                hits.append(upstream.hits(PRIMARY) - before)
                statuses.update(status for status, _, _ in results)
                providers.update(provider for _, provider, _ in results)
                shared_states.add(store.get(_servers.BREAKER).state.value)
        upstream.clear_faults()
    return {
        "workers": workers, "concurrency": concurrency, "hits": hits, "boot": boot,
        "statuses": statuses, "providers": providers, "shared": shared_states,
        "elapsed": elapsed,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="requests per repeat")
    parser.add_argument("--repeats", type=int, default=3, help="repeats per worker count")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--quick", action="store_true",
                        help="workers 1 2 4, one repeat, N / 2")
    args = parser.parse_args(argv)
    total = max(1, args.n // 2 if args.quick else args.n)
    repeats = 1 if args.quick else max(1, args.repeats)
    counts = [w for w in args.workers if w <= 4] if args.quick else args.workers

    _servers.exit_on_signals()
    upstream = _setup.setup()  # this process: embedded settings, a throwaway SQLite file
    _servers.seed_demo(upstream.url)
    # A forced reset in this process is not broadcast (in-memory channel layer here):
    # the workers see it at their next re-read, which wait_all_on_primary waits for.
    logging.getLogger("flexiai_django").setLevel(logging.ERROR)
    _setup.print_header(
        "calls that reach a dead provider",
        workers=" ".join(map(str, counts)), requests=total, repeats=repeats,
        server="gunicorn -k uvicorn_worker.UvicornWorker", store="RedisBreakerStore",
        flexiai=FLEXIAI, fault="demo-primary: HTTP 500 on every call",
    )

    rows = []
    try:
        for workers in counts:
            result = run_worker_count(upstream, workers, repeats, total)
            hits = result["hits"]
            ok = result["statuses"].get(200, 0)
            answered = sum(result["statuses"].values())
            print(f"  {workers} worker(s): up in {result['boot']:.1f}s, hits per repeat "
                  f"{hits}, {total} requests in "
                  f"{' / '.join(f'{s:.1f}s' for s in result['elapsed'])}, answered by "
                  f"{dict(result['providers'])}, shared state after: "
                  f"{', '.join(sorted(result['shared']))}", flush=True)
            rows.append((
                str(workers), str(result["concurrency"]),
                f"{min(hits)} / {statistics.median(hits):g} / {max(hits)}",
                str(THRESHOLD + result["concurrency"] - 1), str(THRESHOLD * workers),
                f"{ok}/{answered}",
            ))
    finally:
        upstream.stop()

    _setup.print_table(
        f"calls that reached the dead provider (threshold {THRESHOLD}, {total} requests, "
        f"{repeats} repeat(s))",
        ["workers", "concurrency", "hits min / median / max",
         "shared bound 5+C-1", "per-worker breakers ≥ 5×W", "HTTP 200"],
        rows,
    )


if __name__ == "__main__":
    main()
