"""Outages of Redis and of a worker under load, with real processes."""

import os
import signal
import time

import httpx
import pytest

from flexiai_django.breakers.redis_store import RedisBreakerStore
from flexiai_django.breakers.state import State
from flexiai_django.testing.redis_server import RedisServer

from .conftest import (
    BREAKER,
    Load,
    edit_provider,
    load,
    local_state,
    start,
    wait_until_every_worker,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


def redis_connected(value):
    return lambda view: view.get("redis_connected") is value


def test_redis_killed_mid_load_fails_no_request_and_workers_resync(seeded, fake_upstream):
    with RedisServer() as own_redis:
        site = start("uvicorn", seeded, workers=2, REDIS_URL=own_redis.url)
        try:
            with Load(site.url) as traffic:
                traffic.wait_for(20)
                own_redis.kill()
                wait_until_every_worker(site.url, 2, redis_connected(False), path="/health")
                health = httpx.get(f"{site.url}/health").json()
                assert health["status"] == "degraded"
                traffic.wait_for(40)

                own_redis.start()
                wait_until_every_worker(site.url, 2, redis_connected(True), path="/health")
                traffic.wait_for(20)
            assert traffic.failures == [], site.output()[-2000:]
            print(f"\n{len(traffic.results)} requests across the outage, none failed")

            shared = RedisBreakerStore(url=own_redis.url)
            shared.force(BREAKER, State.FORCED_OPEN)
            wait_until_every_worker(site.url, 2, lambda v: local_state(v) == "forced_open")
        finally:
            site.stop()


def probe_holder(store):
    """The pid of the worker holding the half-open probe reservation."""
    client = store._redis()
    members = client.zrange(store._keys(BREAKER)[1], 0, -1)
    assert len(members) == 1
    return int(members[0].decode().split(":")[1])


def test_a_worker_killed_while_probing_leaves_nothing_stuck(seeded, fake_upstream):
    site = start("uvicorn", seeded, workers=3, FLEXIAI_JSON='{"PROBE_TTL_SECONDS": 2, '
                 '"FAILURE_THRESHOLD": 3, "OPEN_JITTER": 0, "CACHE_ENABLED": false, '
                 '"ACTIVE_PROBE_SECONDS": null}')
    edit_provider(seeded, "demo-primary", open_seconds=1.0)
    store = RedisBreakerStore(url=os.environ["REDIS_URL"])
    try:
        store.force(BREAKER, State.CLOSED)
        fake_upstream.set_fault("demo-primary", status=500)
        load(site.url, total=12, concurrency=2)
        assert store.get(BREAKER).state is State.OPEN
        fake_upstream.set_fault("demo-primary", delay=30)
        while time.time() < store.get(BREAKER).retry_at + 0.05:
            time.sleep(0.05)
        with Load(site.url, concurrency=1) as probe:
            while store.get(BREAKER).state is not State.HALF_OPEN:
                time.sleep(0.01)
            holder = probe_holder(store)
            os.kill(holder, signal.SIGKILL)
            probe.wait_for(1)
        fake_upstream.clear_faults()

        with Load(site.url) as traffic:
            wait_until_every_worker(site.url, 3, lambda v: local_state(v) == "closed",
                                    timeout=30)  # includes gunicorn respawning the worker
        assert traffic.failures == [], site.output()[-2000:]
        assert holder not in site.worker_pids()
        assert store.get(BREAKER).state is State.CLOSED
        assert len(store.get(BREAKER).probes) == 0
    finally:
        edit_provider(seeded, "demo-primary", open_seconds=None)
        fake_upstream.clear_faults()
        site.stop()
        store.force(BREAKER, State.CLOSED)
