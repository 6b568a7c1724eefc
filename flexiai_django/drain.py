"""Graceful drain: on SIGTERM, readiness says 503 first and the listening socket closes later.

A server that stops accepting the moment it gets SIGTERM (gunicorn's master closes its
listeners and tells the workers to stop at once) turns the last seconds before a load
balancer or Kubernetes notices into "connection refused". Draining instead: flip
``/health/ready`` to 503 at once, keep serving ``DRAIN_SECONDS`` so that whoever routes
traffic sees it and stops sending, then stop as before (in-flight requests and streams
finish up to gunicorn's ``graceful_timeout``; ``worker_exit`` leaves the broadcast group).

Under gunicorn only the master gets SIGTERM from Kubernetes, Docker or ``kill``, so the
drain happens there (:func:`drain_then_stop`, installed by deploy/gunicorn.conf.py's
``when_ready``), and the workers have to learn of it without a signal of their own: the
state is one page of anonymous shared memory made when this module is first imported.
The gunicorn config imports it in the master before any fork, so every worker reads the
same page; the flag costs a byte read per readiness probe. The master never loads Django
settings (a settings module imported before the forks would outlive ``kill -HUP``), so
each worker writes its ``DRAIN_SECONDS`` into the page at start (``post_worker_init``).
Daphne is one process with Twisted's own SIGTERM handling: see :mod:`daphne_drain`.
"""

from __future__ import annotations

import math
import mmap
import signal
import struct
import time
from typing import Any

_SECONDS = struct.Struct("=d")
_SECONDS_AT = 8
#: MAP_SHARED | MAP_ANONYMOUS: processes forked after the import share it. Byte 0 is the
#: draining flag, bytes 8–15 the drain period a worker published (NaN: none yet).
_page = mmap.mmap(-1, mmap.PAGESIZE)
_SECONDS.pack_into(_page, _SECONDS_AT, math.nan)

#: The drain period the master uses when no worker has published one (none started).
DEFAULT_SECONDS = 5.0


def draining() -> bool:
    """True once this server (its master, under gunicorn) has started to drain."""
    return _page[0] == 1


def begin() -> None:
    """Mark this server as draining: every process sharing the page answers 503 ready."""
    _page[0] = 1


def reset() -> None:
    """Not draining, no published period (tests; a process that reuses the page)."""
    _page[0] = 0
    _SECONDS.pack_into(_page, _SECONDS_AT, math.nan)


def publish_seconds(seconds: float) -> None:
    """A worker tells the master how long to drain (it alone has the Django settings)."""
    _SECONDS.pack_into(_page, _SECONDS_AT, float(seconds))


def published_seconds(default: float = DEFAULT_SECONDS) -> float:
    (seconds,) = _SECONDS.unpack_from(_page, _SECONDS_AT)
    return default if math.isnan(seconds) else float(seconds)


# -- gunicorn's master ---------------------------------------------------------------------------

def install(server: Any) -> None:
    """Make the gunicorn master drain on SIGTERM (call from ``when_ready(server)``).

    The arbiter dispatches a queued signal to ``getattr(self, "handle_<name>")``, so an
    attribute on the instance takes the place of its ``handle_term``.
    """
    server.handle_term = lambda: drain_then_stop(server)


def drain_then_stop(server: Any) -> None:
    """Readiness 503 now; keep the workers serving for the drain period; then stop.

    The period ends early when a second SIGTERM comes or no worker is left to serve
    (``kill`` of the whole process group, systemd's default ``KillMode``). SIGINT and
    SIGQUIT still stop at once. Raises ``StopIteration`` as gunicorn's own handler does,
    which makes the arbiter close the listeners and stop the workers gracefully.
    """
    begin()
    seconds = published_seconds()
    deadline = time.monotonic() + seconds
    if seconds > 0:
        server.log.info("flexiai: draining for %.1fs (readiness 503, still serving)", seconds)
    while server.WORKERS and (left := deadline - time.monotonic()) > 0:
        for sig in _signals(server, min(left, 0.5)):
            if sig == signal.SIGTERM:
                server.log.info("flexiai: second SIGTERM, drain cut short")
                raise StopIteration
            if sig == signal.SIGINT:
                server.handle_int()
            elif sig == signal.SIGQUIT:
                server.handle_quit()
            elif sig not in (signal.SIGCHLD, getattr(server, "WAKEUP_REQUEST", None)):
                server.log.info("flexiai: signal %s ignored while draining", sig)
        server.reap_workers()
    raise StopIteration


def _signals(server: Any, timeout: float) -> list[int]:
    """Signals the arbiter queued, waiting up to ``timeout`` (gunicorn 22–23: ~1 s)."""
    if hasattr(server, "wait_for_signals"):  # gunicorn 24+: a SimpleQueue
        return list(server.wait_for_signals(timeout=timeout))
    server.sleep()  # older: a list and a wake-up pipe
    queued = list(server.SIG_QUEUE)
    server.SIG_QUEUE.clear()
    return queued
