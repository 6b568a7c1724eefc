"""Gateway latency and throughput with wrk, side by side in one run.

Every target at 1 and 32 connections, in one run, on one machine:

- floor: a bare Django async view (``bench/_bare_site.py``: no apps, no middleware, no
  database, DEBUG off) under the same server command, served by Django's own ASGI
  handler and by ``flexiai_django.asgi`` (per-request threads reused);
- floor: ``GET /health/live`` of the site (our settings, middleware and logging);
- the fake upstream called directly (what a client would get without the gateway);
- the gateway: ``POST /v1/chat/completions`` through the site with a real API key (demo
  providers pointing at that upstream, Redis breaker store and cache, answer cache on,
  sessions/hedging/continuation enabled but idle), once as the demo serves it (the lean
  API path of ``flexiai_django.asgi``, full demo middleware for every other path) and
  once with ``LEAN_PATHS = []`` (the API through the demo's full middleware stack);
- streaming (``"stream": true``): time to the first SSE event and to the end of the
  stream, gateway vs upstream direct, from a small asyncio client in this process
  (so its figures include that client's own time; wrk cannot time a first byte).

The site runs under the README's production command (gunicorn + uvicorn workers,
``--reuse-port``, DEBUG off, a throwaway Redis); the fake upstream runs in its own
process. wrk, the servers and the upstream share this machine's cores, and other work
on the machine moves every figure: read the ratios of one run, not absolutes across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import _profile  # noqa: E402

from flexiai_django.testing.redis_server import RedisServer, free_port  # noqa: E402
from flexiai_django.testing.servers import (  # noqa: E402
    manage,
    server_command,
    stop_process_group,
    wait_until_answering,
)

BODY = {"model": "auto", "messages": [{"role": "user", "content": "hello there gateway"}]}
LUA = """wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
"""
ISSUE_KEY = """from flexiai_django.models import ApiKey
key = ApiKey(name="bench", scopes="chat", rate_limit_per_minute=0)
print(key.issue()); key.save()"""
WORKER = "uvicorn_worker.UvicornWorker"


def wrk(url: str, connections: int, seconds: int, script: Path | None) -> dict[str, float]:
    threads = 1 if connections == 1 else 2
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script:
        cmd[1:1] = ["-s", str(script)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout

    def ms(label: str) -> float:
        match = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert match, out
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    done = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if "Socket errors" in out:
        print("  wrk:", re.search(r"Socket errors:.*", out).group(0))  # type: ignore[union-attr]
    return {"p50": ms("50%"), "p99": ms("99%"), "rps": rps, "requests": float(done),
            "errors": float(errors.group(1)) if errors else 0.0}


def worker_rss_mb(server_pid: int) -> list[float]:
    """Resident memory of each gunicorn worker (the server's children), in MB."""
    children = Path(f"/proc/{server_pid}/task/{server_pid}/children").read_text().split()
    sizes = []
    for pid in children:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                sizes.append(int(line.split()[1]) / 1024)
    return sizes


class Server:
    """One gunicorn server: the production command line with another app or worker."""

    def __init__(self, app: str, env: dict[str, str], workers: int, worker_class: str,
                 probe: str, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = server_command("uvicorn", self.port, workers)
        cmd[cmd.index("-k") + 1] = worker_class
        cmd[-1] = app
        self.command = cmd
        self.log = (log_dir / f"server-{self.port}.log").open("wb")
        self.process = subprocess.Popen(cmd, env={**os.environ, **env}, cwd=ROOT,
                                        stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        try:
            wait_until_answering(self.process, lambda: httpx.get(self.url + probe, timeout=1),
                                 name=app, timeout=60, details=lambda: f", see {self.log.name}")
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        stop_process_group(self.process)
        self.log.close()


async def _stream_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       request: bytes) -> tuple[float, float]:
    """One streamed POST on a kept-alive connection: (first SSE event, end) in ms."""
    started = time.perf_counter()
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    # The gateway's SSE is chunked and ends with the 0-size chunk; the raw upstream sends
    # its canned events with a Content-Length.
    assert length or b"chunked" in head.lower(), head

    def complete(body: bytes) -> bool:
        return len(body) >= int(length.group(1)) if length else body.endswith(b"\r\n0\r\n\r\n")

    first = 0.0
    body = b""
    while not complete(body):
        body += await reader.read(65536)
        if not first and b"data: " in body:
            first = time.perf_counter()
    assert b"[DONE]" in body, body[-300:]
    return (first - started) * 1000, (time.perf_counter() - started) * 1000


async def _stream_load(url: str, connections: int, seconds: float,
                       token: str) -> dict[str, float]:
    parsed = httpx.URL(url)
    payload = json.dumps({**BODY, "stream": True}).encode()
    request = (f"POST {parsed.raw_path.decode()} HTTP/1.1\r\nHost: {parsed.host}:{parsed.port}"
               f"\r\nContent-Type: application/json\r\nAuthorization: Bearer {token}"
               f"\r\nContent-Length: {len(payload)}\r\n\r\n").encode() + payload
    firsts: list[float] = []
    ends: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        reader, writer = await asyncio.open_connection(parsed.host, parsed.port)
        try:
            await _stream_once(reader, writer, request)  # warm-up, not counted
            while time.perf_counter() < deadline:
                first, end = await _stream_once(reader, writer, request)
                firsts.append(first)
                ends.append(end)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    elapsed = time.perf_counter() - started

    def pct(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100, method="inclusive")[q - 1]

    return {"first_p50": pct(firsts, 50), "first_p99": pct(firsts, 99),
            "end_p50": pct(ends, 50), "rps": len(ends) / elapsed}


def table(targets: list[tuple[str, str, Path | None]], connection_counts: list[int],
          seconds: int, rounds: int) -> dict[tuple[str, int], dict[str, Any]]:
    """Every target at every connection count, ``rounds`` times over (the targets in turn
    within a round, so drift on this shared machine lands on all of them); the table shows
    the median of the rounds, and each result keeps its rounds under ``"rounds"``."""
    runs: dict[tuple[str, int], list[dict[str, float]]] = {}
    for round_no in range(rounds):
        for connections in connection_counts:
            for name, url, lua in targets:
                runs.setdefault((name, connections), []).append(
                    wrk(url, connections, seconds, lua))
        if rounds > 1:
            print(f"  (round {round_no + 1} of {rounds} done)", flush=True)
    label = "" if rounds == 1 else f", median of {rounds} rounds"
    print(f"{'target' + label:34} {'conns':>5} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>9} "
          f"{'non-2xx':>8}")
    results: dict[tuple[str, int], dict[str, Any]] = {}
    for connections in connection_counts:
        for name, _, _ in targets:
            each = runs[(name, connections)]
            r: dict[str, Any] = {key: statistics.median(run[key] for run in each)
                                 for key in ("p50", "p99", "rps")}
            r["errors"] = sum(run["errors"] for run in each)
            r["rounds"] = each
            results[(name, connections)] = r
            print(f"{name:34} {connections:>5} {r['p50']:>8.2f} {r['p99']:>8.2f} "
                  f"{r['rps']:>9.0f} {int(r['errors']):>8}")
    print()
    return results


def profile(seconds: int, targets: list[tuple[str, Server, str]], script: Path,
            tmp: Path) -> None:
    """py-spy one worker of each target's server while wrk loads it at 32 connections."""
    for name, server, url in targets:
        load = subprocess.Popen(["wrk", "-t2", "-c32", f"-d{seconds + 2}s", "-s", str(script),
                                 url], stdout=subprocess.DEVNULL)
        time.sleep(1)
        worker = int(Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
                     .read_text().split()[0])
        raw = tmp / f"profile-{server.port}.txt"
        _profile.record(worker, seconds, raw)
        load.wait()
        kept = Path(tempfile.gettempdir()) / f"flexiai-gateway-{server.port}.pyspy.txt"
        shutil.copy(raw, kept)
        print(f"profile of one worker, {name}, {seconds} s under wrk -c32 (py-spy raw "
              f"stacks kept in {kept}):")
        print(_profile.summarise(raw), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=8, help="per wrk row (default 8)")
    parser.add_argument("--quick", action="store_true", help="2 s per row")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", default="1,32",
                        help="comma-separated wrk connection counts (default 1,32)")
    parser.add_argument("--memory", type=int, default=0, metavar="N",
                        help="also print the lean site's worker memory at rest and after N "
                             "more gateway requests (e.g. 100000)")
    parser.add_argument("--worker-class", default=WORKER,
                        help=f"gunicorn -k for every server (default {WORKER}; "
                             "uvicorn_worker.UvicornH11Worker = pure-Python h11 + asyncio)")
    parser.add_argument("--site-app", default="flexiai_site.asgi:application",
                        help="the site's ASGI application (default %(default)s)")
    parser.add_argument("--no-stream", action="store_true", help="skip the streaming rows")
    parser.add_argument("--upstream", choices=("raw", "fake"), default="raw",
                        help="raw: bench/_raw_upstream.py, a canned answer on raw asyncio "
                             "(default); fake: the test suite's FakeUpstream, which costs "
                             "about as much CPU per call as the gateway")
    parser.add_argument("--profile", type=int, default=0, metavar="SECONDS",
                        help="py-spy one worker of each site for SECONDS under wrk at 32 "
                             "connections and print where its time goes, before the table")
    parser.add_argument("--no-table", action="store_true", help="skip the wrk table")
    parser.add_argument("--litellm", action="store_true",
                        help="add a LiteLLM proxy row (installs it into a throwaway venv "
                             "under ~/.cache/flexiai-bench on first use: bench/_litellm.py)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the table N times over, targets in turn; print medians")
    args = parser.parse_args()
    seconds = 2 if args.quick else args.seconds
    connection_counts = [int(c) for c in args.connections.split(",")]
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install -y wrk)")

    tmp = Path(tempfile.mkdtemp(prefix="flexiai-gateway-"))
    upstream_port = free_port()
    upstream_cmd = ([sys.executable, str(ROOT / "bench" / "_raw_upstream.py")]
                    if args.upstream == "raw" else
                    [sys.executable, "-m", "flexiai_django.testing.fake_upstream"])
    upstream = subprocess.Popen([*upstream_cmd, "--port", str(upstream_port)], cwd=ROOT,
                                stdout=subprocess.DEVNULL)
    redis = RedisServer().start()
    servers: list[Server] = []
    stoppable: list[Any] = []  # LiteLLM, when asked for
    try:
        env = {"DJANGO_SETTINGS_MODULE": "flexiai_site.settings",
               "FLEXIAI_DB": str(tmp / "db.sqlite3"), "FLEXIAI_VAR_DIR": str(tmp),
               "REDIS_URL": redis.url, "DJANGO_DEBUG": "0", "OPENAI_API_KEY": "",
               "ANTHROPIC_API_KEY": "", "FLEXIAI_JSON": json.dumps({
                   "CACHE_ENABLED": True, "ANONYMOUS_RATE_LIMIT_PER_MINUTE": 0,
                   # Enabled but idle: a fast upstream never triggers a hedge or a
                   # continuation; no request names a session.
                   "HEDGED_ALIASES": ["auto"], "CONTINUE_STREAMS": True}),
               # Production settings need a secret; the load carries a real API key.
               "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
               "FLEXIAI_ANONYMOUS_LOOPBACK": "0"}
        manage("migrate", "--noinput", env=env, cwd=ROOT)
        manage("flexiai_seed_demo", "--upstream", f"http://127.0.0.1:{upstream_port}",
               env=env, cwd=ROOT)
        token = manage("shell", "-c", ISSUE_KEY, env=env, cwd=ROOT).split()[-1]
        auth = {"Authorization": f"Bearer {token}"}
        bare_env = {**env, "DJANGO_SETTINGS_MODULE": "_bare_site",
                    "PYTHONPATH": os.pathsep.join([str(ROOT / "bench"), str(ROOT)])}
        bare = Server("_bare_site:application", bare_env, args.workers, args.worker_class,
                      "/hello", tmp)
        servers.append(bare)
        pooled = Server("_bare_site:pooled", bare_env, args.workers, args.worker_class,
                        "/hello", tmp)
        servers.append(pooled)
        site = Server(args.site_app, env, args.workers, args.worker_class, "/health/live", tmp)
        servers.append(site)
        full_env = {**env, "FLEXIAI_JSON": json.dumps({
            **json.loads(env["FLEXIAI_JSON"]), "LEAN_PATHS": []})}
        full = Server(args.site_app, full_env, args.workers, args.worker_class,
                      "/health/live", tmp)
        servers.append(full)

        script = tmp / "post.lua"
        script.write_text(LUA % (json.dumps(BODY), token))
        direct = f"http://127.0.0.1:{upstream_port}/demo-primary/v1/chat/completions"
        gateway = f"{site.url}/v1/chat/completions"
        full_gateway = f"{full.url}/v1/chat/completions"
        for url in (direct, gateway, full_gateway):
            for _ in range(2 * args.workers):  # every worker builds its clients first
                reply = httpx.post(url, json=BODY, headers=auth, timeout=10)
                assert reply.status_code == 200, reply.text
        overheads = [float(httpx.post(gateway, json=BODY, headers=auth, timeout=10)
                           .headers["X-FlexiAI-Overhead-Ms"]) for _ in range(200)]
        litellm_rows: list[tuple[str, str, Path | None]] = []
        if args.litellm:
            from _litellm import LiteLLMProxy

            litellm = LiteLLMProxy(direct.removesuffix("/chat/completions"), args.workers, tmp)
            stoppable.append(litellm)
            litellm_script = tmp / "litellm.lua"
            litellm_script.write_text(LUA % (json.dumps({**BODY, "model": litellm.model}),
                                             litellm.api_key))
            litellm_rows.append((f"LiteLLM proxy {litellm.version}",
                                 f"{litellm.url}/v1/chat/completions", litellm_script))
        targets = [("floor: bare Django view", f"{bare.url}/hello", None),
                   ("floor: bare view, pooled handler", f"{pooled.url}/hello", None),
                   ("floor: site GET /health/live", f"{site.url}/health/live", None),
                   ("upstream direct", direct, script),
                   ("gateway /v1/chat/completions", gateway, script),
                   ("gateway, full stack (LEAN_PATHS=[])", full_gateway, script),
                   *litellm_rows]
        command = " ".join(site.command[1:]).replace(f"127.0.0.1:{site.port}", "127.0.0.1:PORT")
        load = os.getloadavg()
        print(f"machine: {os.uname().machine}, {os.cpu_count()} cores; load average "
              f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start")
        print(f"server: python {command}")
        print(f"  (DJANGO_DEBUG=0, REDIS_URL set, API key, demo MIDDLEWARE; gateway: lean API "
              f"path; full stack: LEAN_PATHS=[]); wrk {seconds}s per row")
        print(f"X-FlexiAI-Overhead-Ms, 200 sequential httpx calls: p50 "
              f"{statistics.median(overheads):.2f}, p99 "
              f"{statistics.quantiles(overheads, n=100)[98]:.2f}")
        if args.profile:
            profile(args.profile, [("gateway (lean API path)", site, gateway),
                                   ("gateway, full stack", full, full_gateway)], script, tmp)
        if not args.no_table:
            results = table(targets, connection_counts, seconds, args.rounds)
            for connections in connection_counts:
                d = results[("upstream direct", connections)]
                g = results[("gateway /v1/chat/completions", connections)]
                s = results[("gateway, full stack (LEAN_PATHS=[])", connections)]
                f = results[("floor: bare Django view", connections)]
                p = results[("floor: bare view, pooled handler", connections)]
                h = results[("floor: site GET /health/live", connections)]
                print(f"c={connections}: gateway adds {g['p50'] - d['p50']:+.2f} ms p50, "
                      f"{g['p99'] - d['p99']:+.2f} ms p99 over direct; gateway req/s = "
                      f"{g['rps'] / f['rps']:.0%} of the bare Django view "
                      f"({g['rps'] / p['rps']:.0%} of the pooled one), "
                      f"{g['rps'] / h['rps']:.0%} of /health/live; full stack "
                      f"{s['rps'] / f['rps']:.0%} of the bare view, lean/full "
                      f"{g['rps'] / s['rps']:.1f}x")
                for name, _, _ in litellm_rows:
                    lite = results[(name, connections)]
                    print(f"  vs {name}: gateway req/s {g['rps'] / lite['rps']:.1f}x its, "
                          f"p50 {g['p50']:.2f} ms against its {lite['p50']:.2f} ms")
                if args.rounds > 1:
                    shares = [gr["rps"] / pr["rps"] for gr, pr in zip(
                        g["rounds"], p["rounds"], strict=True)]
                    print("  gateway / pooled bare view per round: "
                          + ", ".join(f"{share:.0%}" for share in shares))
        if not args.no_stream:
            print(f"\nstreaming (stream: true), asyncio client in this process, {seconds}s per row")
            print(f"{'target':34} {'conns':>5} {'first p50':>9} {'first p99':>9} "
                  f"{'end p50':>8} {'req/s':>7}")
            for connections in connection_counts:
                for name, url in (("upstream direct", direct), ("gateway", gateway)):
                    s = asyncio.run(_stream_load(url, connections, seconds, token))
                    print(f"{name:34} {connections:>5} {s['first_p50']:>9.2f} "
                          f"{s['first_p99']:>9.2f} {s['end_p50']:>8.2f} {s['rps']:>7.0f}",
                          flush=True)
        if args.memory:
            print(f"\nworker memory (RSS MB) of the lean site, "
                  f"{args.memory} gateway requests at 32 connections")
            print(f"  after the rows above: {worker_rss_mb(site.process.pid)}")
            sent = 0
            while sent < args.memory:
                sent += int(wrk(gateway, 32, 10, script)["requests"])
                print(f"  after {sent:>7} more: {worker_rss_mb(site.process.pid)}", flush=True)
        load = os.getloadavg()
        print(f"\nload average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at end")
    finally:
        for server in [*servers, *stoppable]:
            server.stop()
        upstream.terminate()
        upstream.wait()
        redis.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
