"""A throwaway ``redis-server`` on a free loopback port, for tests that must stop or break Redis.

Never touches a shared Redis: each instance has its own port and directory and keeps
nothing on disk.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any
from urllib.parse import urlparse


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ping(url: str, timeout: float = 0.5) -> bool:
    """True when a Redis server answers PING at ``url`` (no client library needed)."""
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379),
                                      timeout=timeout) as sock:
            if parsed.password:
                user = parsed.username or "default"
                sock.sendall(f"AUTH {user} {parsed.password}\r\n".encode())
                sock.recv(64)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


# A live Redis that refuses writes but still answers reads and PING: what an outage looks
# like when the server is full or has been demoted. ``admin`` is a redis-py client of a
# throwaway server (never a shared one). Each pair starts and ends one such fault.


def start_oom(admin: Any) -> None:
    """Every write answers ``OOM command not allowed`` (``maxmemory`` 1, no eviction)."""
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", 1)


def end_oom(admin: Any) -> None:
    admin.config_set("maxmemory", 0)


def start_readonly(admin: Any) -> None:
    """Every write answers ``READONLY``: a replica of a closed port keeps its data."""
    admin.replicaof("127.0.0.1", free_port())


def end_readonly(admin: Any) -> None:
    admin.replicaof("NO", "ONE")


class RedisServer:
    """Start with :meth:`start`, stop (or :meth:`kill`) when done; :meth:`start` again restarts
    on the same port, which is how tests bring Redis back after an outage."""

    def __init__(self, port: int | None = None, password: str | None = None,
                 extra_args: tuple[str, ...] = ()) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
        self.binary = binary
        self.port = port or free_port()
        self.password = password  # requirepass: clients must AUTH (it is in :attr:`url`)
        self.extra_args = extra_args  # e.g. ("--replicaof", "127.0.0.1", "6380")
        self.dir = tempfile.mkdtemp(prefix="flexiai-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--daemonize", "no",
             *(["--requirepass", self.password] if self.password else []),
             *self.extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not ping(self.url):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def kill(self) -> None:
        """SIGKILL: an abrupt outage, as when a Redis host dies."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
