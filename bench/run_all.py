"""Run every benchmark in its own process, in order, streaming their output.

``make bench`` runs this. ``--quick`` (every benchmark does 5-10x less work) is passed
through; ``--redis`` is passed to the benchmarks that use a cache (``propagation`` and
``dead_provider`` always run their own throwaway redis-server and gunicorn). Exits
non-zero if any fails.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: (script, accepts --redis)
BENCHMARKS: tuple[tuple[str, bool], ...] = (
    ("breaker_hot_path", False),
    ("service_overhead", True),
    ("json_libs", False),
    ("propagation", False),
    ("dead_provider", False),
    ("probes", False),
    ("bogus_keys", False),
    ("hedging", False),
    ("frozen_redis", False),
    ("rolling_restart", False),
    ("routing", False),
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5-10x less work in every benchmark")
    parser.add_argument("--redis", action="store_true",
                        help="cache tier on Redis where a benchmark uses one")
    args = parser.parse_args(argv)

    failed: list[str] = []
    started = time.monotonic()
    for name, takes_redis in BENCHMARKS:
        script = HERE / f"{name}.py"
        command = [sys.executable, str(script)]
        if args.quick:
            command.append("--quick")
        if args.redis and takes_redis:
            command.append("--redis")
        shown = [str(script.relative_to(ROOT)), *command[2:]]
        print(f"\n$ python {' '.join(shown)}", flush=True)
        began = time.monotonic()
        code = subprocess.run(command, cwd=ROOT, check=False).returncode
        print(f"[{name}: exit {code}, {time.monotonic() - began:.1f}s]", flush=True)
        if code != 0:
            failed.append(name)

    print(f"\nall benchmarks: {time.monotonic() - started:.1f}s", flush=True)
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
