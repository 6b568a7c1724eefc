"""Warm-up probes: a warming provider takes traffic again once it answers one.

Every ``WARMUP_PROBE_SECONDS`` the deployment sends each provider marked ``warming`` one
minimal real call (the active prober's: ``ping``, ``max_tokens`` 1, short timeout). One
probe per provider and interval for the whole deployment, whatever the number of
workers: the first process to take the provider's ``warmup:<name>`` lease in the breaker
store probes (the active prober's scheme). On an answer the row's ``warming`` flag is
cleared in the database; the save invalidates this process's provider cache and is
broadcast, so every worker (and the status page) sees the provider warm at once, and the
others within ``PROVIDER_REFRESH_SECONDS`` in any case. A failed probe changes nothing:
a model still loading is not an outage, so no breaker records it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.dispatch import receiver

from flexiai_django import metrics, process_role, signals
from flexiai_django.active_probes import (
    IDLE_SECONDS,
    ProbeCall,
    Runner,
    call_provider,
    probe_timeout,
    wake_delay,
)
from flexiai_django.breakers import get_store
from flexiai_django.breakers.store import BreakerStore
from flexiai_django.conf import get_settings
from flexiai_django.process_local import PerProcess
from flexiai_django.provider_cache import get_providers
from flexiai_django.providers.base import ProviderConfig

logger = logging.getLogger("flexiai_django")


def lease_key(provider: str) -> str:
    return f"warmup:{provider}"


def mark_warm(name: str) -> bool:
    """Clear ``warming`` on the provider's row (a save: the change is broadcast); False
    when it was no longer warming (another process, or an admin, got there first)."""
    from flexiai_django.models import Provider

    row = Provider.objects.filter(name=name, warming=True).first()
    if row is None:
        return False
    row.warming = False
    row.save(update_fields=["warming", "updated_at"])
    logger.info("provider %s answered its warm-up probe: it takes traffic now", name)
    return True


class WarmupProber:
    """Which warming providers to probe and who probes them; :meth:`tick` is one pass."""

    def __init__(self, store: Callable[[], BreakerStore] = get_store,
                 providers: Callable[[], Iterable[ProviderConfig]] = get_providers,
                 call: ProbeCall = call_provider,
                 warmed: Callable[[str], bool] = mark_warm,
                 clock: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random) -> None:
        self._store = store
        self._providers = providers
        self._call = call
        self._warmed = warmed
        self._clock = clock
        self._rand = rand
        self.sent = 0
        self._idle = True  # the last pass found no warming provider

    def tick(self, interval: float) -> dict[str, str]:
        """Probe each warming provider whose lease this process takes; their outcomes."""
        warming = [p for p in self._providers() if p.warming]
        self._idle = not warming
        if not warming:
            return {}  # the usual case: the cached provider list only, no Redis
        store = self._store()
        outcomes: dict[str, str] = {}
        for provider in warming:
            timeout = probe_timeout(provider, interval)
            key = lease_key(provider.name)
            token = store.take_lease(key, interval + timeout)
            if token is None:
                continue
            started = self._clock()
            try:
                outcome, kind = self._call(provider, timeout)
                if outcome == "ok":
                    self._warmed(provider.name)
            except Exception as exc:  # a bug (or the database) must not stop the prober
                logger.warning("warm-up probe of %s raised %s", provider.name,
                               type(exc).__name__)
                outcome, kind = "error", None
            self.sent += 1
            outcomes[provider.name] = outcome
            metrics.warmup_probed(provider.name, outcome if outcome in ("ok", "error")
                                  else metrics.outcome_of(kind or ""))
            store.settle_lease(key, token, interval - (self._clock() - started))
        return outcomes

    def wait(self, interval: float | None) -> float:
        """A whole interval while nothing is warming (the provider list is read once an
        interval), else a jittered fraction of it so the lease goes to whoever is first."""
        if interval is None:
            return IDLE_SECONDS
        return interval if self._idle else wake_delay(interval, self._rand())


def _interval() -> float | None:
    return get_settings().WARMUP_PROBE_SECONDS


def _build() -> Runner:
    return Runner(WarmupProber(), interval=_interval, name="flexiai-warmup",
                  label="warm-up prober").start()


_runner: PerProcess[Runner] = PerProcess(_build)


def start() -> Runner:
    """This process's warm-up prober, started once per process (again after a fork)."""
    return _runner.get()


def stop(timeout: float = 1.0) -> None:
    """Stop this process's warm-up prober (a worker shutting down)."""
    runner = _runner.pop()
    if runner is not None:
        runner.stop(timeout)


@receiver(signals.store_ready, dispatch_uid="flexiai-warmup-prober")
def _start_with_the_store(**kwargs: Any) -> None:
    if process_role.runs_probers():
        start()
