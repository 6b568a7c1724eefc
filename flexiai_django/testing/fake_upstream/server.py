"""``FakeUpstream``: start, stop and steer a fake upstream from Python.

The object tests and benchmarks hold: it binds the port, runs the server thread (or the
foreground loop), shuts it down promptly, and offers the Python side of what the HTTP
control API does (faults, reply prefixes, hits, recordings, stats) on the shared state.
"""

from __future__ import annotations

import dataclasses
import threading
from types import TracebackType
from typing import Any

from flexiai_django.testing.fake_upstream import formats
from flexiai_django.testing.fake_upstream.faults import Fault
from flexiai_django.testing.fake_upstream.handler import Handler
from flexiai_django.testing.fake_upstream.state import RecordedRequest, State, norm_scope
from flexiai_django.testing.fake_upstream.transport import PAUSE_SLICE, Server


class FakeUpstream:
    """A fake OpenAI / Anthropic / Ollama upstream on a real loopback port.

    The socket is bound in the constructor, so ``port`` and ``url`` are known before
    ``start()`` (port 0 picks a free port).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._state = State()
        self._server = Server((host, port), self._state, Handler)
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
                    kwargs={"poll_interval": PAUSE_SLICE},
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

    @property
    def hangups(self) -> int:
        """Replies abandoned by their client while paused (a delay, a slow first token or a
        stall) since start or the last reset(): the client hung up."""
        return self._state.hangups

    def reset(self) -> None:
        """Back to a fresh server: no faults, counters, recordings or custom prefixes."""
        self._state.reset()
