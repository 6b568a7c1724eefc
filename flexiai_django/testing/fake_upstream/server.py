"""A fake LLM upstream: a real loopback HTTP/1.1 server speaking OpenAI, Anthropic and Ollama.

Tests, benchmarks and the demo point providers at it so the proxy talks to a real network
peer. Faults (error statuses, delays, resets, broken or slow streams, auth checks) can be
switched per *scope* at run time, from Python or over HTTP, so one server can play several
independent upstreams: ``/primary/v1/chat/completions`` is scope ``"primary"``.

Run it by hand with ``python -m flexiai_django.testing.fake_upstream --port 8001``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

from flexiai_django.testing.fake_upstream import formats
from flexiai_django.testing.fake_upstream.faults import Fault
from flexiai_django.testing.fake_upstream.formats import ApiFormat, Reply
from flexiai_django.testing.fake_upstream.state import (
    DEFAULT_REPLY_PREFIX,
    Headers,
    RecordedRequest,
    State,
    norm_scope,
)

__all__ = ["DEFAULT_REPLY_PREFIX", "FakeUpstream", "Fault", "RecordedRequest", "main"]

_PAUSE_SLICE = 0.05
_DISCONNECTS = (ConnectionError, TimeoutError)

def _control_error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error"}}


# --- server ---------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeUpstream/1.0"
    sys_version = ""
    disable_nagle_algorithm = True

    @property
    def state(self) -> State:
        return cast(_Server, self.server).state

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: tests and benchmarks don't want a line per request."""

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except _DISCONNECTS:
            self.close_connection = True
        if self.state.stopping.is_set():
            self.close_connection = True

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    # -- plumbing

    def _dispatch(self) -> None:
        body = self._read_body()
        if body is None:
            self.close_connection = True
            self._send_json(400, _control_error("unreadable request body"))
            return
        parts = urlsplit(self.path)
        control = self._controls().get(parts.path)
        if control is not None:
            method, action = control
            if self.command != method:
                self._send_json(405, _control_error("method not allowed"), {"Allow": method})
            else:
                action(body)
            return
        route = formats.for_path(parts.path)
        if route is None:
            message = f"no route for {self.command} {parts.path}"
            self._send_json(404, {"error": {"message": message, "type": "not_found_error"}})
            return
        scope, api = route
        if self.command != "POST":
            document = api.error_document(405, f"{self.command} not allowed; use POST")
            self._send_json(405, document, {"Allow": "POST"})
            return
        self._serve_api(norm_scope(scope), api, parts.path, parts.query, body)

    def _read_body(self) -> bytes | None:
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
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _pause(self, seconds: float) -> bool:
        """Sleep in slices; False as soon as the server stops or the client hangs up."""
        deadline = time.monotonic() + seconds
        watch_client = True
        while (remaining := deadline - time.monotonic()) > 0:
            if self.state.stopping.is_set():
                return False
            step = min(_PAUSE_SLICE, remaining)
            if not watch_client:
                self.state.stopping.wait(step)
                continue
            try:
                readable, _, _ = select.select([self.connection], [], [], step)
                if readable and not self.connection.recv(1, socket.MSG_PEEK):
                    return False
            except (OSError, ValueError):
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

    # -- control API

    def _controls(self) -> dict[str, tuple[str, Callable[[bytes], None]]]:
        return {
            "/_fault": ("POST", self._control_fault),
            "/_reset": ("POST", self._control_reset),
            "/_stats": ("GET", self._control_stats),
            "/_health": ("GET", self._control_health),
        }

    def _control_fault(self, body: bytes) -> None:
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            self._send_json(400, _control_error("body must be JSON"))
            return
        if not isinstance(data, dict):
            self._send_json(400, _control_error("body must be a JSON object"))
            return
        scope = data.pop("scope", "")
        clear = data.pop("clear", False)
        prefix = data.pop("reply_prefix", None)
        if not isinstance(scope, str) or not isinstance(prefix, str | None):
            self._send_json(400, _control_error("'scope' and 'reply_prefix' must be strings"))
            return
        scope = norm_scope(scope)
        try:
            fault = None if clear or not data else Fault.from_dict(data)
        except (TypeError, ValueError) as exc:
            self._send_json(400, _control_error(str(exc)))
            return
        if prefix is not None:
            self.state.set_reply_prefix(scope, prefix)
        if clear or data or prefix is None:
            self.state.set_fault(scope, fault)
        shown = fault.to_dict() if fault is not None else None
        self._send_json(200, {"ok": True, "scope": scope, "fault": shown})

    def _control_reset(self, body: bytes) -> None:
        self.state.reset()
        self._send_json(200, {"ok": True})

    def _control_stats(self, body: bytes) -> None:
        self._send_json(200, self.state.stats())

    def _control_health(self, body: bytes) -> None:
        self._send_json(200, {"ok": True})

    # -- LLM endpoints

    def _serve_api(
        self, scope: str, api: ApiFormat, path: str, query: str, body: bytes
    ) -> None:
        payload: Any
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        headers = Headers(self.headers.items())
        record = RecordedRequest(
            path, headers, payload, self.command, scope, api.name, query, body
        )
        fault, prefix, number = self.state.arrive(scope, record)
        fault = fault or Fault()

        if fault.delay and not self._pause(fault.delay):
            self.close_connection = True
            return
        if fault.reset:
            self._abort()
            return
        if fault.auth_key is not None and not api.authorized(headers, fault.auth_key):
            self._send_json(401, api.error_document(401, "invalid or missing api key"))
            return
        if fault.status is not None:
            extra = {}
            if fault.retry_after is not None:
                extra["Retry-After"] = f"{fault.retry_after:g}"
            message = f"fake upstream error {fault.status}"
            self._send_json(fault.status, api.error_document(fault.status, message), extra)
            return
        if not isinstance(payload, dict):
            message = "request body must be a JSON object"
            self._send_json(400, api.error_document(400, message))
            return

        reply = api.reply(payload, prefix, number)
        if api.wants_stream(payload):
            self._stream(api, reply, fault)
        else:
            self._reply_whole(api, reply, fault)

    def _reply_whole(self, api: ApiFormat, reply: Reply, fault: Fault) -> None:
        body = json.dumps(api.document(reply)).encode()
        if fault.malformed:
            body = api.malformed_body
        if not fault.truncated:
            self._send_raw(200, body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self._hang_up()

    def _stream(self, api: ApiFormat, reply: Reply, fault: Fault) -> None:
        self.send_response(200)
        self.send_header("Content-Type", api.stream_content_type)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if fault.malformed:
            for frame in api.malformed_frames:
                self._write_chunk(frame)
            self.wfile.write(b"0\r\n\r\n")
            return
        preamble, pieces, epilogue = api.frames(reply)
        for frame in preamble:
            self._write_chunk(frame)
        frames: list[bytes | None] = [*pieces, None]
        for sent, piece in enumerate(frames):
            if fault.stream_fail_after is not None and sent >= fault.stream_fail_after:
                self._abort()
                return
            if fault.truncated and (sent >= 1 or piece is None):
                self._hang_up()
                return
            if sent and fault.chunk_delay and not self._pause(fault.chunk_delay):
                self.close_connection = True
                return
            if piece is not None:
                self._write_chunk(piece)
        for frame in epilogue:
            self._write_chunk(frame)
        self.wfile.write(b"0\r\n\r\n")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], state: State) -> None:
        self.state = state
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

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


class FakeUpstream:
    """A fake OpenAI / Anthropic / Ollama upstream on a real loopback port.

    The socket is bound in the constructor, so ``port`` and ``url`` are known before
    ``start()`` (port 0 picks a free port).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._state = State()
        self._server = _Server((host, port), self._state)
        self.host: str = host
        self.port: int = int(self._server.server_address[1])
        self._lifecycle = threading.Lock()
        self._thread: threading.Thread | None = None
        self._foreground: threading.Thread | None = None
        self._closed = False

    # -- lifecycle

    def start(self) -> FakeUpstream:
        """Serve from a daemon thread; returns self so ``FakeUpstream().start()`` chains."""
        with self._lifecycle:
            if self._closed:
                raise RuntimeError("FakeUpstream was stopped; create a new one")
            if self._thread is None and self._foreground is None:
                self._thread = threading.Thread(
                    target=self._server.serve_forever,
                    kwargs={"poll_interval": _PAUSE_SLICE},
                    name=f"fake-upstream:{self.port}",
                    daemon=True,
                )
                self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until Ctrl-C (or stop() from another thread)."""
        with self._lifecycle:
            if self._closed or self._thread is not None or self._foreground is not None:
                raise RuntimeError("FakeUpstream is already running or stopped")
            self._foreground = threading.current_thread()
        try:
            self._server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            with self._lifecycle:
                self._foreground = None
            self.stop()

    def stop(self) -> None:
        """Stop serving, drop open connections and free the port; safe to call twice."""
        with self._lifecycle:
            if self._closed:
                return
            self._closed = True
            loop = self._thread or self._foreground
        self._state.stopping.set()
        if loop is not None and loop is not threading.current_thread():
            self._server.shutdown()
        self._server.server_close()
        self._state.drop_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def base_url(self, scope: str = "", api: str = "openai") -> str:
        """What to put in a provider's base URL field for ``scope``."""
        path = formats.named(api).base_path
        scope = norm_scope(scope)
        root = f"{self.url}/{scope}" if scope else self.url
        return root + path

    # -- faults and observations

    def set_fault(self, scope: str = "", fault: Fault | None = None, **fields: Any) -> None:
        """Make ``scope`` misbehave; keyword fields override ``fault``'s. No fault → healthy."""
        if fields:
            fault = dataclasses.replace(fault or Fault(), **fields)
        self._state.set_fault(norm_scope(scope), fault)

    def clear_faults(self) -> None:
        self._state.clear_faults()

    def set_reply_prefix(self, scope: str, prefix: str) -> None:
        self._state.set_reply_prefix(norm_scope(scope), prefix)

    def hits(self, scope: str = "") -> int:
        """Requests that reached ``scope``'s endpoints, counted before any fault applied."""
        return self._state.hits(norm_scope(scope))

    def requests(self, scope: str = "") -> list[RecordedRequest]:
        """The last requests ``scope`` received, oldest first."""
        return self._state.requests(norm_scope(scope))

    def stats(self) -> dict[str, Any]:
        """Same document as ``GET /_stats``."""
        return self._state.stats()

    @property
    def connections(self) -> int:
        """TCP connections accepted since start or the last reset()."""
        return self._state.connections

    def reset(self) -> None:
        """Back to a fresh server: no faults, counters, recordings or custom prefixes."""
        self._state.reset()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fake upstream in the foreground, for the demo and manual poking."""
    parser = argparse.ArgumentParser(
        prog="python -m flexiai_django.testing.fake_upstream",
        description="Fake OpenAI/Anthropic/Ollama upstream with run-time fault injection.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args(argv)
    upstream = FakeUpstream(args.host, args.port)
    print(f"fake upstream listening on {upstream.url}", flush=True)
    upstream.serve_forever()
    return 0
