"""Active probing: an OPEN provider is called out of band, so it is back soon after it heals.

Without it a breaker learns of a recovery only from a real request after its open period
(``OPEN_SECONDS``, doubled each time a half-open probe lands inside the outage), so a
provider down for 30 s comes back a minute or more later. With it, while a provider's
breaker is OPEN (never FORCED_OPEN or DISABLED: an admin decided those), the deployment
sends it one minimal call (``ping``, ``max_tokens`` 1, not streamed, short timeout) per
``ACTIVE_PROBE_SECONDS``; a success closes the breaker at once (the version bump is
broadcast to every worker), a failure changes nothing but the breaker's last error.

One probe per interval for the whole deployment, not one per worker: every process wakes
at a jittered fraction of the interval and the first to take the breaker's lease
(:meth:`~flexiai_django.breakers.store.BreakerStore.take_lease`, ``SET NX PX`` in Redis)
probes. The lease covers the probe and then is re-timed to end one interval after the
probe began. With the in-process store each process probes its own breakers.

:class:`Prober` is the logic (which breakers, when, who), on an injected clock and call;
:func:`start` runs it in a daemon thread per process beside the broadcast listener. The
loop never raises into the worker, and logs only provider names and error kinds.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, Protocol

from django.db import close_old_connections
from django.dispatch import receiver

from flexiai_django import metrics, process_role, signals
from flexiai_django.breakers import get_store
from flexiai_django.breakers.state import BreakerState, State
from flexiai_django.breakers.store import BreakerStore
from flexiai_django.chat_types import ChatRequest, Message
from flexiai_django.conf import get_settings
from flexiai_django.errors import ProviderError
from flexiai_django.process_local import PerProcess
from flexiai_django.provider_cache import get_providers
from flexiai_django.providers import get_adapter
from flexiai_django.providers.base import ProviderConfig
from flexiai_django.providers.clients import sync_client

logger = logging.getLogger("flexiai_django")

#: The cheapest real call a chat API answers.
PROBE_REQUEST = ChatRequest(messages=(Message(role="user", content="ping"),), max_tokens=1)
#: A probe waits at most this long, or the interval (at least 1 s), or the provider's own
#: timeout, whichever is shortest.
PROBE_TIMEOUT_CAP = 5.0
#: How often an idle prober (ACTIVE_PROBE_SECONDS None) looks at the settings again.
IDLE_SECONDS = 1.0

#: A probe's outcome and error kind: "ok", "failed" (the provider is still down),
#: "inconclusive" (an answer that blames the request, such as a 400: no verdict) or
#: "error" (a bug here).
ProbeCall = Callable[[ProviderConfig, float], tuple[str, str | None]]


def wake_delay(interval: float, rand: float) -> float:
    """Seconds until a process looks again: 20-50 % of the interval, spread so that
    processes (and replicas) do not wake in step and the lease goes to whoever is first."""
    return interval * (0.2 + 0.3 * rand)


def probe_timeout(provider: ProviderConfig, interval: float) -> float:
    return min(provider.timeout, PROBE_TIMEOUT_CAP, max(interval, 1.0))


def open_breakers(states: dict[str, BreakerState], now: float) -> set[str]:
    """The breakers to probe: OPEN ones (never FORCED_OPEN or DISABLED: an admin's call),
    except those cooling down until a provider's Retry-After has passed (``now``: wall
    clock, as the store's times are)."""
    return {name for name, state in states.items() if state.state is State.OPEN
            and (state.cooldown_until is None or state.cooldown_until <= now)}


def call_provider(provider: ProviderConfig, timeout: float) -> tuple[str, str | None]:
    """One real probe through the provider's adapter, waiting at most ``timeout``."""
    config = replace(provider, timeout=timeout)
    try:
        get_adapter(config).complete(sync_client(provider.name), PROBE_REQUEST)
    except ProviderError as exc:
        return ("failed" if exc.trips_breaker else "inconclusive"), exc.kind
    return "ok", None


class Prober:
    """Which breakers to probe and who probes them; :meth:`tick` is one pass."""

    def __init__(self, store: Callable[[], BreakerStore] = get_store,
                 providers: Callable[[], Iterable[ProviderConfig]] = get_providers,
                 call: ProbeCall = call_provider,
                 clock: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random,
                 wall: Callable[[], float] = time.time) -> None:
        self._store = store
        self._wall = wall
        self._providers = providers
        self._call = call
        self._clock = clock
        self._rand = rand
        self.sent = 0

    def _open(self, store: BreakerStore) -> set[str]:
        """From the snapshots the broadcast listener keeps fresh (no I/O), else the store."""
        return open_breakers(store.snapshots() or store.all(), self._wall())

    def tick(self, interval: float) -> dict[str, str]:
        """Probe each OPEN provider whose lease this process takes; their outcomes."""
        store = self._store()
        names = self._open(store)
        if not names:
            return {}  # the usual case: no provider list read, no lease asked for
        outcomes: dict[str, str] = {}
        for provider in self._providers():
            name = provider.breaker_name
            if name not in names:
                continue
            timeout = probe_timeout(provider, interval)
            token = store.take_lease(name, interval + timeout)
            if token is None:
                continue
            started = self._clock()
            try:
                outcome, kind = self._call(provider, timeout)
            except Exception as exc:  # a bug in an adapter must not stop the prober
                logger.warning("active probe of %s raised %s", provider.name,
                               type(exc).__name__)
                outcome, kind = "error", None
            self.sent += 1
            outcomes[provider.name] = outcome
            metrics.probed(provider.name, outcome if outcome in ("ok", "error")
                           else metrics.outcome_of(kind or ""))
            if outcome in ("ok", "failed"):
                store.record_active_probe(name, provider.breaker, ok=outcome == "ok",
                                          error=kind)
            store.settle_lease(name, token, interval - (self._clock() - started))
        return outcomes

    def wait(self, interval: float | None) -> float:
        return IDLE_SECONDS if interval is None else wake_delay(interval, self._rand())


class Ticking(Protocol):
    """What a :class:`Runner` drives: a pass per interval, then a wait."""

    sent: int

    def tick(self, interval: float) -> dict[str, str]: ...

    def wait(self, interval: float | None) -> float: ...


def _active_probe_seconds() -> float | None:
    return get_settings().ACTIVE_PROBE_SECONDS


class Runner:
    """The per-process thread around a prober (:class:`Prober`, or the warm-up prober
    with its own ``interval`` setting); :meth:`stop` ends it."""

    def __init__(self, prober: Ticking | None = None,
                 interval: Callable[[], float | None] = _active_probe_seconds,
                 name: str = "flexiai-prober", label: str = "active prober") -> None:
        self.prober: Ticking = prober or Prober()
        self._interval = interval
        self._label = label
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Runner:
        self.thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            interval: float | None = None
            try:
                interval = self._interval()
                if interval is not None:
                    close_old_connections()  # the provider table is read from this thread
                    self.prober.tick(interval)
            except Exception as exc:
                logger.warning("%s pass failed (%s)", self._label, type(exc).__name__)
            self._stop.wait(self.prober.wait(interval))


def _build() -> Runner:
    return Runner().start()


_runner: PerProcess[Runner] = PerProcess(_build)


def start() -> Runner:
    """This process's prober, started once per process (again in a forked child)."""
    return _runner.get()


def stop(timeout: float = 1.0) -> None:
    """Stop this process's prober (a worker shutting down: gunicorn's ``worker_exit``, ASGI
    lifespan). A probe in flight is not waited for beyond ``timeout``: the thread is a
    daemon, and the lease it holds ends by itself."""
    runner = _runner.pop()
    if runner is not None:
        runner.stop(timeout)


@receiver(signals.store_ready, dispatch_uid="flexiai-active-prober")
def _start_with_the_store(**kwargs: Any) -> None:
    if process_role.runs_probers():
        start()
