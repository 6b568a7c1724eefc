"""Graceful drain under daphne: an ASGI wrapper that takes over daphne's SIGTERM.

Daphne is one process on Twisted: on SIGTERM Twisted stops the reactor, daphne cancels
every application still running (``kill_all_applications``, a stream in flight included)
and the socket closes. Wrapped with :class:`DrainOnSigterm`, SIGTERM instead turns
``/health/ready`` to 503 at once (:mod:`flexiai_django.drain`), keeps serving
``DRAIN_SECONDS``, then stops listening, lets HTTP requests in flight finish for up to
``DRAIN_TIMEOUT_SECONDS``, leaves the broadcast group and stops the reactor (daphne then
cancels what is left: WebSockets). A second SIGTERM stops at once; SIGINT is untouched.

Under any other server the wrapper only passes requests through (gunicorn drains in its
master: deploy/gunicorn.conf.py). ``DRAIN_SECONDS = 0`` keeps daphne's own handling.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from typing import Any

from flexiai_django import broadcast, drain
from flexiai_django.conf import get_settings

logger = logging.getLogger("flexiai_django")


class DrainOnSigterm:
    """``application = DrainOnSigterm(ProtocolTypeRouter({...}))``; counts HTTP in flight."""

    def __init__(self, application: Any) -> None:
        self.application = application
        self.in_flight = 0
        if "daphne.server" in sys.modules and "twisted.internet.reactor" in sys.modules:
            # After reactor.run() has installed Twisted's handlers, which this replaces.
            _reactor().callWhenRunning(self._take_sigterm)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.application(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.application(scope, receive, send)
        finally:
            self.in_flight -= 1

    def _take_sigterm(self) -> None:
        if (get_settings().DRAIN_SECONDS <= 0
                or threading.current_thread() is not threading.main_thread()
                or signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, signal.SIG_IGN, None)):
            return  # Twisted installed no handler (runserver's reloader): leave it so
        reactor = _reactor()

        def on_sigterm(signum: int, frame: Any) -> None:
            reactor.callFromThread(self._begin)

        signal.signal(signal.SIGTERM, on_sigterm)

    def _begin(self) -> None:
        reactor = _reactor()

        if drain.draining():  # a second SIGTERM: stop now
            reactor.stop()
            return
        drain.begin()
        seconds = get_settings().DRAIN_SECONDS
        logger.info("draining for %.1fs (readiness 503, still serving)", seconds)
        reactor.callLater(seconds, self._close)

    def _close(self) -> None:
        from twisted.internet import tcp

        ports: list[Any] = [r for r in _reactor().getReaders() if isinstance(r, tcp.Port)]
        for port in ports:  # unix.Port is a tcp.Port too
            port.stopListening()
        self._finish_by(time.monotonic() + get_settings().DRAIN_TIMEOUT_SECONDS)

    def _finish_by(self, deadline: float) -> None:
        from twisted.internet import threads

        reactor = _reactor()
        if self.in_flight and time.monotonic() < deadline:
            reactor.callLater(0.1, self._finish_by, deadline)
            return
        if self.in_flight:
            logger.warning("drain: %d requests still running, stopping", self.in_flight)
        threads.deferToThread(broadcast.leave).addBoth(lambda _: reactor.stop())


def _reactor() -> Any:
    """The running reactor (daphne installed it); Twisted types it as a module."""
    from twisted.internet import reactor

    return reactor
