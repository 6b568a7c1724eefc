"""Gateway latency and throughput with wrk, side by side in one run.

Three targets, each at 1 and 32 connections: the fake upstream directly (what a client
would get without the gateway), POST /v1/chat/completions through the gateway under the
README's production command (gunicorn + uvicorn workers, Redis), and GET /health/live on
the same server (a near-bare Django async view: the floor). The fake upstream runs in
its own process so it does not share this process's GIL. wrk, the servers and the
upstream all share this machine's cores: read ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flexiai_django.testing.redis_server import RedisServer, free_port  # noqa: E402
from flexiai_django.testing.servers import ServerProcess, manage  # noqa: E402

BODY = {"model": "auto", "messages": [{"role": "user", "content": "hello there gateway"}]}
LUA = """wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
"""


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
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if "Socket errors" in out:
        print("  wrk:", re.search(r"Socket errors:.*", out).group(0))  # type: ignore[union-attr]
    return {"p50": ms("50%"), "p99": ms("99%"), "rps": rps,
            "errors": float(errors.group(1)) if errors else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="2 s per measurement")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--lean", action="store_true",
                        help="API-only middleware (FLEXIAI_LEAN_MIDDLEWARE=1)")
    args = parser.parse_args()
    seconds = 2 if args.quick else args.seconds
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install -y wrk)")

    tmp = Path(tempfile.mkdtemp(prefix="flexiai-gateway-"))
    upstream_port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, "-m", "flexiai_django.testing.fake_upstream", "--port",
         str(upstream_port)], cwd=ROOT, stdout=subprocess.DEVNULL)
    redis = RedisServer().start()
    server = None
    try:
        env = {"FLEXIAI_DB": str(tmp / "db.sqlite3"), "REDIS_URL": redis.url,
               "DJANGO_DEBUG": "0", "OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": "",
               "FLEXIAI_JSON": json.dumps({"CACHE_ENABLED": True}),
               "FLEXIAI_LEAN_MIDDLEWARE": "1" if args.lean else "0"}
        manage("migrate", "--noinput", env=env, cwd=ROOT)
        manage("flexiai_seed_demo", "--upstream", f"http://127.0.0.1:{upstream_port}",
               env=env, cwd=ROOT)
        server = ServerProcess("uvicorn", env, workers=args.workers, cwd=ROOT).start()
        script = tmp / "post.lua"
        script.write_text(LUA % json.dumps(BODY))
        direct = f"http://127.0.0.1:{upstream_port}/demo-primary/v1/chat/completions"
        for url in (direct, f"{server.url}/v1/chat/completions"):
            assert httpx.post(url, json=BODY, timeout=10).status_code == 200
        targets = [("upstream direct", direct, script),
                   ("gateway /v1/chat/completions", f"{server.url}/v1/chat/completions",
                    script),
                   ("floor: GET /health/live", f"{server.url}/health/live", None)]
        print(f"machine: {os.uname().machine}, {os.cpu_count()} cores; server: gunicorn -k "
              f"uvicorn_worker.UvicornWorker -w {args.workers}; wrk {seconds}s per row; "
              f"middleware: {'lean (API only)' if args.lean else 'full demo stack'}")
        print(f"{'target':32} {'conns':>5} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>9} {'non-2xx':>8}")
        results: dict[tuple[str, int], dict[str, float]] = {}
        for connections in (1, 32):
            for name, url, lua in targets:
                r = wrk(url, connections, seconds, lua)
                results[(name, connections)] = r
                print(f"{name:32} {connections:>5} {r['p50']:>8.2f} {r['p99']:>8.2f} "
                      f"{r['rps']:>9.0f} {int(r['errors']):>8}")
        for connections in (1, 32):
            d = results[("upstream direct", connections)]
            g = results[("gateway /v1/chat/completions", connections)]
            f = results[("floor: GET /health/live", connections)]
            print(f"c={connections}: gateway adds {g['p50'] - d['p50']:+.2f} ms p50, "
                  f"{g['p99'] - d['p99']:+.2f} ms p99 over direct; throughput "
                  f"{g['rps'] / f['rps'] if f['rps'] else 0:.0%} of the floor")
    finally:
        if server:
            server.stop()
        upstream.terminate()
        upstream.wait()
        redis.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
