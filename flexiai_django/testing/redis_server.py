"""A throwaway ``redis-server`` on a free loopback port, for tests that must stop or break Redis.

Never touches a shared Redis: each instance has its own port and directory and keeps
nothing on disk.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlparse


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ping(url: str, timeout: float = 0.5) -> bool:
    """True when a Redis server answers PING at ``url`` (no client library needed);
    ``rediss://`` URLs verify the server against their ``ssl_ca_certs``."""
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379),
                                      timeout=timeout) as raw:
            if parsed.scheme != "rediss":
                return _ping(raw, parsed.username, parsed.password)
            ca = parse_qs(parsed.query).get("ssl_ca_certs", [None])[0]
            with ssl.create_default_context(cafile=ca).wrap_socket(
                    raw, server_hostname=parsed.hostname) as sock:
                return _ping(sock, parsed.username, parsed.password)
    except OSError:  # ssl.SSLError included
        return False


def _ping(sock: socket.socket, username: str | None, password: str | None) -> bool:
    if password:
        sock.sendall(f"AUTH {username or 'default'} {password}\r\n".encode())
        sock.recv(64)
    sock.sendall(b"PING\r\n")
    return sock.recv(64).startswith(b"+PONG")


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway CA and a server certificate it signed for 127.0.0.1 (PEM files)."""

    ca: Path
    cert: Path
    key: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """Generate a CA and a server certificate for ``IP:127.0.0.1`` with ``openssl``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl is not installed (apt-get install -y openssl)")
    directory.mkdir(parents=True, exist_ok=True)
    ca, cert, key = directory / "ca.crt", directory / "server.crt", directory / "server.key"
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    for args in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(directory / "ca.key"),
         "-out", str(ca), "-days", "2", "-subj", "/CN=flexiai test CA"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(directory / "server.csr"), "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", str(directory / "server.csr"), "-CA", str(ca),
         "-CAkey", str(directory / "ca.key"), "-CAcreateserial", "-out", str(cert),
         "-days", "2", "-extfile", str(ext)],
    ):
        subprocess.run([openssl, *args], check=True, capture_output=True)
    return TlsFiles(ca, cert, key)


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
                 tls: TlsFiles | None = None, users: Sequence[str] = (),
                 extra_args: tuple[str, ...] = ()) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
        self.binary = binary
        self.port = port or free_port()
        self.password = password  # requirepass: clients must AUTH (it is in :attr:`url`)
        self.tls = tls  # TLS only (no plain port); clients need not present a certificate
        self.users = tuple(users)  # ACL rules, e.g. "app on >secret ~flexiai* +get"
        self.extra_args = extra_args  # e.g. ("--replicaof", "127.0.0.1", "6380")
        self.dir = tempfile.mkdtemp(prefix="flexiai-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The default user's URL (an administrator's)."""
        auth = f":{self.password}@" if self.password else ""
        return self.url_for(auth)

    def user_url(self, user: str, password: str, ca: Path | None = None) -> str:
        """An ACL user's URL; over TLS ``ca`` (default: the server's own CA) verifies it."""
        return self.url_for(f"{quote(user, safe='')}:{quote(password, safe='')}@", ca)

    def url_for(self, auth: str, ca: Path | None = None) -> str:
        if self.tls is None:
            return f"redis://{auth}127.0.0.1:{self.port}/0"
        return (f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_cert_reqs=required"
                f"&ssl_ca_certs={ca or self.tls.ca}")

    def _command(self) -> list[str]:
        port = ["--port", str(self.port)]
        if self.tls is not None:
            port = ["--port", "0", "--tls-port", str(self.port),
                    "--tls-cert-file", str(self.tls.cert), "--tls-key-file", str(self.tls.key),
                    "--tls-ca-cert-file", str(self.tls.ca), "--tls-auth-clients", "no"]
        users = [arg for rule in self.users for arg in ("--user", *rule.split())]
        return [self.binary, *port, "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", self.dir, "--daemonize", "no",
                *(["--requirepass", self.password] if self.password else []), *users,
                *self.extra_args]

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.process = subprocess.Popen(self._command(), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
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
