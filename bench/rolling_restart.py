"""A rolling restart of two instances under load, behind nginx and behind HAProxy.

Two instances of the demo site (gunicorn + uvicorn workers with deploy/gunicorn.conf.py,
so SIGTERM drains for ``--drain`` seconds) share a throwaway redis-server and a fake
upstream; the shipped deploy/nginx.conf or deploy/haproxy.cfg is rendered onto a free
port in front of them (flexiai_django.testing). Clients send plain chat completions
(``--plain`` threads, back to back, kept-alive connections, an API key) and streams
(``--streams`` threads, 8 pieces 0.12 s apart) through the proxy while each instance in
turn gets SIGTERM, exits, starts again and comes back into rotation
(flexiai_django.testing.rolling). Rows:

* haproxy: the shipped config; its health checks take the draining instance out.
* nginx, taken out first: the operator marks the instance ``down`` and reloads nginx
  before the SIGTERM, and puts it back once ready (README "Rolling restarts").
* nginx, passive only: no reload; nginx learns of the restart from refused connections
  (``proxy_next_upstream``). Shows why the README asks for the step above.

"sent again": a request on a kept-alive connection the proxy closed unanswered (a reload
ends nginx's old workers), sent once more on a new one as HTTP clients do.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import _servers
import _setup

DRAIN = 2.0
CHUNK_DELAY = 0.12
GUNICORN_CONF = _setup.ROOT / "deploy" / "gunicorn.conf.py"
ROWS = ("haproxy", "nginx, taken out first", "nginx, passive only")


def run_row(row: str, servers: list[Any], token: str, plain: int, streams: int) -> dict[str, Any]:
    from flexiai_django.testing import haproxy, nginx
    from flexiai_django.testing.rolling import Traffic, rolling_restart

    urls = [s.url for s in servers]
    proxy = haproxy.HAProxy(urls) if row == "haproxy" else nginx.NginxProxy(urls)
    take_out = None
    if row == "nginx, taken out first":
        def take_out(server: Any, out: bool) -> None:
            proxy.set_down(server.url, out)

    began = time.monotonic()
    with proxy, Traffic(proxy.url, token, lambda prompt: f"echo: {prompt}",
                        plain_clients=plain, stream_clients=streams) as traffic:
        while sum(o.ok for o in traffic.outcomes) < 50:  # warm: every worker answered
            time.sleep(0.05)
        restarts = rolling_restart(servers, traffic, take_out=take_out)
        settle = len(traffic.outcomes)
        while len(traffic.outcomes) < settle + 50:
            time.sleep(0.05)
    outcomes = traffic.outcomes
    during = [o for o in outcomes if o.kind == "plain"
              and restarts[0].sigterm_at <= o.started
              <= restarts[-1].sigterm_at + restarts[-1].back_in_rotation]
    return {
        "sent": len(outcomes), "failed": len(traffic.failures),
        "retried": len(traffic.retried),
        "streams": sum(1 for o in outcomes if o.kind == "stream"),
        "streams_ok": sum(1 for o in outcomes if o.kind == "stream" and o.ok),
        "plain": _setup.stats([o.latency * 1000 for o in outcomes if o.kind == "plain"]),
        "during": _setup.stats([o.latency * 1000 for o in during]),
        "max": max(o.latency * 1000 for o in outcomes if o.kind == "plain"),
        "restarts": restarts, "seconds": time.monotonic() - began,
        "failures": [o.detail[:120] for o in traffic.failures[:3]],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="workers per instance")
    parser.add_argument("--plain", type=int, default=3, help="plain-request client threads")
    parser.add_argument("--streams", type=int, default=2, help="stream client threads")
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    parser.add_argument("--quick", action="store_true", help="one worker per instance")
    args = parser.parse_args(argv)
    workers = 1 if args.quick else args.workers

    _servers.exit_on_signals()
    upstream = _setup.setup()
    _servers.seed_demo(upstream.url)
    from flexiai_django.testing.keys import issue_api_key

    token = issue_api_key("bench-rolling")[1]
    logging.getLogger("flexiai_django").setLevel(logging.ERROR)
    upstream.set_fault("demo-primary", chunk_delay=CHUNK_DELAY)
    _setup.print_header(
        "rolling restart of two instances under load", workers_per_instance=workers,
        drain_seconds=DRAIN, plain_clients=args.plain, stream_clients=args.streams,
        server="gunicorn -c deploy/gunicorn.conf.py -k uvicorn_worker.UvicornWorker",
        stream=f"8 pieces, {CHUNK_DELAY}s apart")

    results = {}
    with contextlib.ExitStack() as stack:
        redis = _servers.start_redis(stack)
        env = {**_servers.site_env(redis.url, DRAIN_SECONDS=DRAIN, MAX_RETRIES=0,
                                         CACHE_ENABLED=False),
               "GUNICORN_CMD_ARGS": f"--config {GUNICORN_CONF}"}
        servers = []
        for name in ("app1", "app2"):
            metrics = Path(tempfile.mkdtemp(prefix=f"flexiai-bench-{name}-"))
            env_one = {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
            servers.append(_servers.start_server(stack, env_one, workers))
        for row in args.rows:
            result = results[row] = run_row(row, servers, token, args.plain, args.streams)
            timings = ", ".join(f"exit {r.exited:.1f}s ready {r.ready:.1f}s back "
                                f"{r.back_in_rotation:.1f}s" for r in result["restarts"])
            print(f"  {row}: {result['seconds']:.0f}s; {timings}"
                  + (f"; failures {json.dumps(result['failures'])}" if result["failed"] else ""),
                  flush=True)
    upstream.stop()

    _setup.print_table(
        "rolling restart (both instances in turn), plain-request latency in ms",
        ["proxy", "sent", "failed", "sent again", "streams complete", "p50", "p99",
         "p99 during restarts", "max"],
        [(row, r["sent"], r["failed"], r["retried"], f"{r['streams_ok']}/{r['streams']}",
          _setup.fmt(r["plain"]["p50"], 1), _setup.fmt(r["plain"]["p99"], 1),
          _setup.fmt(r["during"]["p99"], 1), _setup.fmt(r["max"], 0))
         for row, r in results.items()],
    )


if __name__ == "__main__":
    main()
