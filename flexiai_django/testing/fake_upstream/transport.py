"""The HTTP/1.1 plumbing under the fake upstream, with no knowledge of LLM APIs or faults.

A threading server that counts and tracks connections (so ``stop()`` can wake idle
keep-alive threads), and a handler base with the byte-level moves fault injection needs:
read a plain or chunked body, send a whole or chunked response, pause while watching for
a hang-up, end with a TCP reset or a half-close. ``handler`` decides when to use them.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import struct
import sys
import time
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any, cast

from flexiai_django.testing.fake_upstream.state import State

PAUSE_SLICE = 0.05
"""Seconds between checks for a stopped server or a gone client while pausing or serving."""

_DISCONNECTS = (ConnectionError, TimeoutError)


class Server(ThreadingHTTPServer):
    """A threading HTTP server on IPv4 or IPv6 that reports its sockets to ``state``."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], state: State, handler: type[Connection]
    ) -> None:
        self.state = state
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def server_bind(self) -> None:
        """Skip HTTPServer's reverse-DNS lookup of the host, which can stall for seconds."""
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        if isinstance(request, socket.socket):
            self.state.opened(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket | tuple[bytes, socket.socket]) -> None:
        if isinstance(request, socket.socket):
            self.state.closed(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients vanishing mid-response is expected here; only report real bugs."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class Connection(BaseHTTPRequestHandler):
    """One client connection: keep-alive HTTP/1.1, quiet, and dropped on server stop."""

    protocol_version = "HTTP/1.1"
    server_version = "FakeUpstream/1.0"
    sys_version = ""
    disable_nagle_algorithm = True

    @property
    def state(self) -> State:
        return cast(Server, self.server).state

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: tests and benchmarks don't want a line per request."""

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except _DISCONNECTS:
            self.close_connection = True
        if self.state.stopping.is_set():
            self.close_connection = True

    # -- reading

    def _read_body(self) -> bytes | None:
        """The request body, plain or chunked; None if it cannot be read as declared."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        try:
            length = int(raw)
        except ValueError:
            return None
        if length < 0:
            return None
        body = self.rfile.read(length)
        return body if len(body) == length else None

    def _read_chunked(self) -> bytes | None:
        body = bytearray()
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                return None
            if size == 0:
                break
            body += self.rfile.read(size)
            self.rfile.readline(16)
        while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
            pass
        return bytes(body)

    # -- writing

    def _start_response(
        self, status: int, content_type: str, headers: Mapping[str, str] | None = None
    ) -> None:
        """Status line and headers, Content-Type first."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()

    def _send_json(
        self, status: int, document: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        self._send_raw(status, json.dumps(document).encode(), headers)

    def _send_raw(
        self,
        status: int,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        self._start_response(
            status, content_type, {"Content-Length": str(len(body)), **(headers or {})}
        )
        self.wfile.write(body)

    def _write_chunks(self, frames: Iterable[bytes]) -> None:
        """Each frame as one chunk of a chunked body."""
        for data in frames:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    # -- misbehaving

    def _pause(self, seconds: float) -> bool:
        """Sleep in slices; False as soon as the server stops or the client hangs up."""
        deadline = time.monotonic() + seconds
        watch_client = True
        while (remaining := deadline - time.monotonic()) > 0:
            if self.state.stopping.is_set():
                return False
            step = min(PAUSE_SLICE, remaining)
            if not watch_client:
                self.state.stopping.wait(step)
                continue
            try:
                readable, _, _ = select.select([self.connection], [], [], step)
                if readable and not self.connection.recv(1, socket.MSG_PEEK):
                    self.state.hung_up()
                    return False
            except (OSError, ValueError):
                self.state.hung_up()
                return False
            # Pipelined bytes keep the socket readable; stop polling it.
            watch_client = not readable
        return not self.state.stopping.is_set()

    def _abort(self) -> None:
        """Drop the connection with a TCP RST (SO_LINGER 0) instead of a polite FIN."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()
            self.connection.close()

    def _hang_up(self) -> None:
        """Close with FIN mid-response, leaving the client with a short body."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_WR)
