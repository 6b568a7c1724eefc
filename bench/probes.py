"""Active probes a dead provider receives per minute, by worker count (one per interval).

For 1, 4 and 8 ``gunicorn -k uvicorn_worker.UvicornWorker`` workers (``--quick``: 1 and
4), each with a fresh throwaway ``redis-server`` (``RedisBreakerStore``, broadcast on a
channels-redis group) and ``FLEXIAI_JSON={"FAILURE_THRESHOLD": 5, "OPEN_SECONDS": 300,
"ACTIVE_PROBE_SECONDS": <interval>, "CACHE_ENABLED": false, "DEGRADED_MESSAGE": null}``:
the demo providers point at a :class:`FakeUpstream` in this process whose scope
``demo-primary`` answers every request with HTTP 500. Requests open its breaker, then for
``--window`` seconds (20; ``--quick``: 10) nothing else is sent and the probes that reach
``demo-primary`` (``{"role": "user", "content": "ping"}``, ``max_tokens`` 1) are counted,
then scaled to a minute. One probe per interval for the deployment is
``60 / interval`` a minute whatever the worker count; a prober per worker would be
``workers x`` that.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import time
from typing import Any

import _servers
import _setup
import httpx

PRIMARY = "demo-primary"


def is_probe(request: Any) -> bool:
    body = request.json or {}
    return bool(body.get("messages") == [{"role": "user", "content": "ping"}]
                and body.get("max_tokens") == 1)


def probes(upstream: Any) -> list[Any]:
    return [r for r in upstream.requests(PRIMARY) if is_probe(r)]


def run_worker_count(upstream: Any, workers: int, interval: float,
                     window: float) -> dict[str, Any]:
    from flexiai_django.breakers.redis_store import RedisBreakerStore
    from flexiai_django.breakers.state import State

    flexiai = {"FAILURE_THRESHOLD": 5, "OPEN_SECONDS": 300, "ACTIVE_PROBE_SECONDS": interval,
               "CACHE_ENABLED": False, "DEGRADED_MESSAGE": None}
    with contextlib.ExitStack() as stack:
        redis_server = _servers.start_redis(stack)
        started = time.monotonic()
        server = _servers.start_server(
            stack, _servers.site_env(redis_server.url, **flexiai), workers, timeout=180)
        boot = time.monotonic() - started
        store = RedisBreakerStore(url=redis_server.url)
        upstream.clear_faults()
        upstream.set_fault(PRIMARY, status=500)
        with httpx.Client(timeout=30) as client:
            while store.get(_servers.BREAKER).state is not State.OPEN:
                client.post(f"{server.url}/chat/direct", json={"message": "hi"},
                            headers=_servers.CLOSE)
        before = len(probes(upstream))
        began = time.monotonic()
        time.sleep(window)
        seen = probes(upstream)[before:]
        elapsed = time.monotonic() - began
        state = store.get(_servers.BREAKER)
        upstream.clear_faults()
    return {"workers": workers, "boot": boot, "probes": len(seen), "elapsed": elapsed,
            "per_minute": len(seen) * 60 / elapsed, "state": state}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=1.0, help="ACTIVE_PROBE_SECONDS")
    parser.add_argument("--window", type=float, default=20.0, help="seconds counted")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--quick", action="store_true", help="workers 1 4, a 10 s window")
    args = parser.parse_args(argv)
    window = min(args.window, 10.0) if args.quick else args.window
    counts = [w for w in args.workers if w <= 4] if args.quick else args.workers

    _servers.exit_on_signals()
    upstream = _setup.setup()
    _servers.seed_demo(upstream.url)
    logging.getLogger("flexiai_django").setLevel(logging.ERROR)
    _setup.print_header(
        "active probes a dead provider receives", workers=" ".join(map(str, counts)),
        interval=args.interval, window=window, server="gunicorn -k uvicorn_worker.UvicornWorker",
        store="RedisBreakerStore", fault="demo-primary: HTTP 500 on every call",
    )
    rows = []
    try:
        for workers in counts:
            result = run_worker_count(upstream, workers, args.interval, window)
            state = result["state"]
            print(f"  {workers} worker(s): up in {result['boot']:.1f}s, {result['probes']} "
                  f"probes in {result['elapsed']:.1f}s; breaker {state.state.value}, "
                  f"{state.active_probes} probes recorded, openings {state.openings}",
                  flush=True)
            rows.append((str(workers), str(result["probes"]), f"{result['elapsed']:.1f}",
                         f"{result['per_minute']:.1f}", f"{60 / args.interval:g}",
                         f"{60 / args.interval * workers:g}", str(state.openings)))
    finally:
        upstream.stop()
    _setup.print_table(
        f"probes per minute to one dead provider (ACTIVE_PROBE_SECONDS {args.interval:g})",
        ["workers", "probes", "seconds", "per minute", "one per interval",
         "a prober per worker", "openings"],
        rows,
    )


if __name__ == "__main__":
    main()
