"""Child-process side of the race tests (imported by spawned processes: no Django settings)."""

import time

from flexiai_django import signals
from flexiai_django.breakers.redis_store import RedisBreakerStore
from flexiai_django.breakers.state import BreakerConfig, State

CFG = BreakerConfig(failure_threshold=5, open_seconds=30, jitter=0.0, half_open_max_calls=2,
                    probe_ttl=30)


def later():
    return time.time() + 1000


def _count_transitions(into):
    def receiver(sender, name, before, after, **kwargs):
        into.append(after.state)
    signals.breaker_transition.connect(receiver, weak=False)


def fail_together(url, prefix, barrier, failures):
    """Wait for every process, then record failures as fast as possible."""
    transitions = []
    _count_transitions(transitions)
    store = RedisBreakerStore(url=url, key_prefix=prefix, snapshot_ttl=0)
    barrier.wait()
    for _ in range(failures):
        store.record("race", CFG, success=False, probe=False, error="x")
    return transitions.count(State.OPEN)


def probe_together(url, prefix, barrier, attempts):
    """After the open period (a clock far ahead), try to become a half-open probe."""
    transitions = []
    _count_transitions(transitions)
    store = RedisBreakerStore(url=url, key_prefix=prefix, snapshot_ttl=0, clock=later)
    barrier.wait()
    probes = sum(store.acquire("race", CFG).probe for _ in range(attempts))
    return probes, transitions.count(State.HALF_OPEN)
