"""Processes racing on one breaker: exactly one opens it, exactly N become probes."""

import multiprocessing
import os
import uuid
from concurrent.futures import ProcessPoolExecutor

import pytest

from flexiai_django.breakers.redis_store import RedisBreakerStore
from flexiai_django.breakers.state import State

from . import _race

PROCESSES = 8


@pytest.fixture
def racers():
    ctx = multiprocessing.get_context("spawn")
    manager = ctx.Manager()
    with ProcessPoolExecutor(PROCESSES, mp_context=ctx) as pool:
        yield pool, manager.Barrier(PROCESSES)
    manager.shutdown()


def test_concurrent_failures_open_the_breaker_once_and_all_count(racers):
    pool, barrier = racers
    url, prefix = os.environ["REDIS_URL"], f"race{uuid.uuid4().hex[:6]}"
    futures = [pool.submit(_race.fail_together, url, prefix, barrier, 5)
               for _ in range(PROCESSES)]
    openings = sum(f.result(timeout=60) for f in futures)

    state = RedisBreakerStore(url=url, key_prefix=prefix).get("race")
    assert openings == 1
    assert (state.state, state.openings) == (State.OPEN, 1)
    assert state.total_failures == PROCESSES * 5


def test_concurrent_callers_after_the_open_period_get_exactly_the_permitted_probes(racers):
    pool, barrier = racers
    url, prefix = os.environ["REDIS_URL"], f"race{uuid.uuid4().hex[:6]}"
    store = RedisBreakerStore(url=url, key_prefix=prefix)
    for _ in range(5):
        store.record("race", _race.CFG, success=False, probe=False)
    assert store.get("race").state is State.OPEN

    futures = [pool.submit(_race.probe_together, url, prefix, barrier, 3)
               for _ in range(PROCESSES)]
    results = [f.result(timeout=60) for f in futures]

    assert sum(probes for probes, _ in results) == _race.CFG.half_open_max_calls
    assert sum(half_opened for _, half_opened in results) == 1
    assert len(store.get("race").probes) == _race.CFG.half_open_max_calls
