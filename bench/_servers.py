"""Shared set-up for the multi-process benchmarks: throwaway Redis, seeded site, gunicorn.

Everything started here is registered on a :class:`contextlib.ExitStack` *before* it is
started, so an error or Ctrl-C part-way through a start still stops it;
:func:`exit_on_signals` makes SIGTERM raise ``SystemExit`` so ``finally`` blocks run
then too (and keeps a second Ctrl-C from interrupting the cleanup). Only throwaway
``redis-server`` instances on free ports are used: the machine's own Redis is never
touched.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import _setup
import httpx

CLOSE = {"connection": "close"}
_SECRET_KEY = secrets.token_urlsafe(50)
BREAKER = "llm:demo-primary"


def exit_on_signals() -> None:
    """SIGINT raises KeyboardInterrupt and SIGTERM SystemExit in the main thread, so the
    cleanup in ``finally`` blocks runs; further signals are ignored while it does."""

    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        sys.exit(128 + signum)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def start_redis(stack: contextlib.ExitStack) -> Any:
    """A throwaway ``redis-server`` on a free port, closed when ``stack`` unwinds."""
    from flexiai_django.testing.redis_server import RedisServer

    server = RedisServer()
    stack.callback(server.close)
    return server.start()


def seed_demo(upstream_url: str) -> None:
    """The demo providers in this process's (throwaway) DB, pointing at ``upstream_url``.

    Needs :func:`_setup.configure_django` first; the servers get the same SQLite file.
    """
    from django.core.management import call_command

    call_command("flexiai_seed_demo", upstream=upstream_url, stdout=io.StringIO())


def site_env(redis_url: str, **flexiai: Any) -> dict[str, str]:
    """The environment of a server process: this process's DB, the given Redis, FLEXIAI."""
    return {
        "DJANGO_SETTINGS_MODULE": "flexiai_site.settings",
        "FLEXIAI_DB": os.environ["FLEXIAI_DB"],
        "FLEXIAI_VAR_DIR": os.environ["FLEXIAI_VAR_DIR"],
        "REDIS_URL": redis_url,
        # Benchmarks send far more anonymous requests than the default limit allows.
        "FLEXIAI_JSON": json.dumps({"ANONYMOUS_RATE_LIMIT_PER_MINUTE": 0, **flexiai}),
        "DJANGO_DEBUG": "0",
        # Production settings refuse to start without a secret key of their own.
        "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY") or _SECRET_KEY,
        # The demo's anonymous access from 127.0.0.1 (no API key), explicitly.
        "FLEXIAI_ANONYMOUS_LOOPBACK": "1",
        "OPENAI_API_KEY": "",
        "ANTHROPIC_API_KEY": "",
    }


def start_server(
    stack: contextlib.ExitStack, env: dict[str, str], workers: int,
    kind: str = "uvicorn", timeout: float = 120.0,
) -> Any:
    """Start a server, stopped when ``stack`` unwinds; returns once every worker answers
    and has its broadcast listener connected."""
    from flexiai_django.testing.servers import ServerProcess

    server = ServerProcess(kind, env, workers=workers, cwd=_setup.ROOT)
    stack.callback(server.stop)
    server.start(timeout=timeout)
    # A ServerProcess that pipes the server's stderr (as it did when this was written)
    # reads it only if the start fails; the site logs a line per request there, so an
    # undrained pipe fills up (64 KiB) and every worker blocks on its next log write.
    # Drain it for the server's lifetime. (One that logs to a file has nothing here.)
    stream = server.process.stderr
    if stream is not None:
        server.stderr_tail = collections.deque(maxlen=50)
        threading.Thread(target=_drain, args=(stream, server.stderr_tail),
                         name="server-stderr", daemon=True).start()
    wait_for_workers(server.url, workers, timeout)
    return server


def _drain(stream: Any, tail: collections.deque[bytes]) -> None:
    """Read ``stream`` until EOF (the server exited), keeping its last lines."""
    with contextlib.suppress(OSError, ValueError):
        for line in stream:
            tail.append(line)


def wait_for_workers(url: str, workers: int, timeout: float) -> dict[str, dict[str, Any]]:
    """GET /circuit-breakers on fresh connections until ``workers`` distinct workers have
    answered with their listener connected (the view starts it: ``get_store()``)."""
    deadline = time.monotonic() + timeout
    ready: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    with httpx.Client(timeout=10) as client:
        while time.monotonic() < deadline:
            body = client.get(f"{url}/circuit-breakers", headers=CLOSE).json()
            seen.add(body["worker_id"])
            if body.get("sync_enabled"):
                ready[body["worker_id"]] = body
            if len(ready) >= workers:
                return ready
            time.sleep(0.02)
    raise RuntimeError(
        f"{len(ready)} of {workers} workers ready ({len(seen)} answered) within {timeout}s"
    )


def warm_up_chat(
    client: httpx.Client, url: str, workers: int, each: int = 2, timeout: float = 60.0
) -> None:
    """POST /chat/direct until every worker has answered ``each`` chats successfully."""
    deadline = time.monotonic() + timeout
    answered: dict[str, int] = {}
    while len(answered) < workers or min(answered.values()) < each:
        if time.monotonic() > deadline:
            raise RuntimeError(f"chat warm-up: {answered} after {timeout}s")
        response = client.post(f"{url}/chat/direct", json={"message": "hi"}, headers=CLOSE)
        if response.status_code == 200:
            worker = response.json()["worker_id"]
            answered[worker] = answered.get(worker, 0) + 1


def timed_requests(
    request: Callable[[], httpx.Response], n: int
) -> list[float]:
    """Milliseconds per call of ``request`` (which must succeed), ``n`` times in a row."""
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        response = request()
        samples.append((time.perf_counter() - start) * 1000)
        response.raise_for_status()
    return samples

