"""Real server processes (gunicorn, daphne) for multi-worker tests and benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx

from flexiai_django.testing.redis_server import free_port

DEFAULT_ASGI_APP = "flexiai_site.asgi:application"


def server_command(kind: str, port: int, workers: int = 2,
                   asgi_app: str = DEFAULT_ASGI_APP) -> list[str]:
    """The production command lines from the README, on a loopback port.

    ``asgi_app`` swaps the application for uvicorn and daphne (browser tests add static
    files with :mod:`flexiai_django.testing.static_asgi`).
    """
    bind = f"127.0.0.1:{port}"
    gunicorn = [sys.executable, "-m", "gunicorn", "--bind", bind, "--workers", str(workers),
                "--reuse-port", "--graceful-timeout", "3", "--log-level", "warning"]
    if kind == "uvicorn":
        return [*gunicorn, "-k", "uvicorn_worker.UvicornWorker", asgi_app]
    if kind == "gunicorn-sync":
        return [*gunicorn, "--threads", "4", "flexiai_site.wsgi:application"]
    if kind == "daphne":
        return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), asgi_app]
    raise ValueError(f"unknown server kind {kind!r}")


class ServerProcess:
    """Start a server with an environment, wait until it answers, stop it at the end."""

    def __init__(self, kind: str, env: dict[str, str], workers: int = 2,
                 cwd: Path | None = None, asgi_app: str = DEFAULT_ASGI_APP) -> None:
        self.kind = kind
        self.asgi_app = asgi_app
        self.port = free_port()
        self.workers = workers
        self.url = f"http://127.0.0.1:{self.port}"
        self._env = {**os.environ, **env}
        self._cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        # A file, not a pipe: a pipe nobody drains fills up and blocks every worker's logging.
        self.log = tempfile.NamedTemporaryFile(prefix=f"flexiai-{kind}-", suffix=".log")  # noqa: SIM115

    def output(self) -> str:
        """What the server has written to stdout and stderr so far."""
        return Path(self.log.name).read_text(errors="replace")

    def start(self, timeout: float = 30.0) -> ServerProcess:
        self.process = subprocess.Popen(
            server_command(self.kind, self.port, self.workers, self.asgi_app), env=self._env,
            cwd=self._cwd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until_answering(
                self.process, lambda: httpx.get(f"{self.url}/health/live", timeout=1),
                name=self.kind, timeout=timeout, details=lambda: ":\n" + self.output()[-3000:])
        except RuntimeError:
            self.stop()
            raise
        return self

    def worker_pids(self) -> list[int]:
        """Child processes of the server (gunicorn workers); the server itself for daphne."""
        assert self.process is not None
        if self.kind == "daphne":
            return [self.process.pid]
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.process.pid)],
                             capture_output=True, text=True, check=False).stdout
        return [int(pid) for pid in out.split()]

    def stop(self) -> None:
        if self.process:
            stop_process_group(self.process)
        self.log.close()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_until_answering(process: subprocess.Popen[Any],
                         ask: Callable[[], httpx.Response], *, name: str, timeout: float,
                         details: Callable[[], str] = str, interval: float = 0.1,
                         any_status: bool = False) -> float:
    """Call ``ask()`` every ``interval`` until it gets a 200 (any reply with
    ``any_status``): the seconds that took. ``RuntimeError`` naming ``name`` (and
    ``details()``, e.g. its log) if ``process`` exits first or ``timeout`` passes."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited at start{details()}")
        try:
            reply: httpx.Response | None = ask()
        except httpx.TransportError:
            reply = None
        if reply is not None and (any_status or reply.status_code == 200):
            return time.monotonic() - started
        time.sleep(interval)
    raise RuntimeError(f"{name} did not answer within {timeout:g}s{details()}")


def stop_process_group(process: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM a process started with ``start_new_session=True`` and its group (a server
    and its workers), SIGKILL after ``timeout`` seconds."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def collect_workers(client: httpx.Client, url: str, expected: int,
                    tries: int = 400) -> dict[str, dict[str, object]]:
    """GET ``url`` on fresh connections until ``expected`` distinct workers have answered."""
    seen: dict[str, dict[str, object]] = {}
    for _ in range(tries):
        body = client.get(url, headers={"connection": "close"}).json()
        seen[str(body["worker_id"])] = body
        if len(seen) >= expected:
            break
    return seen


def manage(*args: str, env: dict[str, str], cwd: Path | None = None) -> str:
    result = subprocess.run([sys.executable, "manage.py", *args], env={**os.environ, **env},
                            cwd=cwd, capture_output=True, text=True, check=True)
    return result.stdout


def pids_of(workers: Iterable[str]) -> list[int]:
    return [int(w.rsplit(":", 1)[1]) for w in workers]
