"""Four gunicorn/uvicorn worker processes and one Redis behave as one breaker."""

import os
import threading
import time

import httpx
import pytest
import redis

from flexiai_django.breakers import get_store
from flexiai_django.breakers.state import State
from flexiai_django.broadcast import REJOIN_SECONDS
from flexiai_django.conf import get_settings
from flexiai_django.testing.servers import manage

from .conftest import (
    BREAKER,
    breaker_views,
    edit_provider,
    load,
    local_state,
    site_env,
    start,
    wait_until_every_worker,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db]
WORKERS = 4


@pytest.fixture(scope="module")
def site(seeded):
    server = start("uvicorn", seeded, workers=WORKERS)
    yield server
    server.stop()


@pytest.fixture
def clean(site, fake_upstream):
    """Fresh shared state, and every worker has dropped what it knew before."""
    get_store().force(BREAKER, State.CLOSED)
    wait_until_every_worker(site.url, WORKERS, lambda v: local_state(v) in (None, "closed"))
    return site


def providers(results):
    return {body.get("provider") for _, body in results}


def test_a_dead_primary_costs_the_deployment_threshold_calls_not_threshold_per_worker(
        clean, fake_upstream):
    fake_upstream.set_fault("demo-primary", status=500)
    concurrency = 4

    results = load(clean.url, total=120, concurrency=concurrency)

    assert {status for status, _ in results} == {200}
    hits = fake_upstream.hits("demo-primary")
    print(f"\ncalls that reached the dead upstream: {hits} "
          f"(threshold 5, {WORKERS} workers, {concurrency} in flight)")
    assert 5 <= hits <= 5 + concurrency < 5 * WORKERS
    views = breaker_views(clean.url, WORKERS)
    assert {local_state(v) for v in views.values()} == {"open"}

    more = load(clean.url, total=40, concurrency=concurrency)
    assert fake_upstream.hits("demo-primary") == hits
    assert providers(more) == {"demo-secondary"}


@pytest.fixture
def short_open_period(seeded, clean):
    edit_provider(seeded, "demo-primary", open_seconds=1.0)
    yield
    edit_provider(seeded, "demo-primary", open_seconds=None)


def test_after_the_open_period_exactly_one_probe_reaches_the_upstream(
        clean, short_open_period, fake_upstream):
    fake_upstream.set_fault("demo-primary", status=500)
    load(clean.url, total=20, concurrency=2)
    assert get_store().get(BREAKER).state is State.OPEN
    tripped_hits = fake_upstream.hits("demo-primary")
    fake_upstream.set_fault("demo-primary", delay=4, times=1)
    retry_at = get_store().get(BREAKER).retry_at
    while time.time() < retry_at + 0.05:
        time.sleep(0.05)

    probe = threading.Thread(target=load, args=(clean.url, 1, 1))
    probe.start()
    while fake_upstream.hits("demo-primary") == tripped_hits:
        time.sleep(0.01)
    burst = load(clean.url, total=40, concurrency=8)
    probe.join()

    assert fake_upstream.hits("demo-primary") == tripped_hits + 1
    assert providers(burst) == {"demo-secondary"}
    wait_until_every_worker(clean.url, WORKERS, lambda v: local_state(v) == "closed")
    after = load(clean.url, total=20, concurrency=4)
    assert providers(after) == {"demo-primary"}


def test_a_transition_in_one_process_reaches_every_worker_quickly(clean):
    get_store().force(BREAKER, State.FORCED_OPEN)
    seconds = wait_until_every_worker(clean.url, WORKERS,
                                      lambda v: local_state(v) == "forced_open")
    print(f"\nforced_open visible in all {WORKERS} workers after {seconds * 1000:.0f} ms")
    assert seconds < 1.5


def test_an_admin_edit_reaches_every_worker_without_a_restart(clean, seeded, fake_upstream):
    edit_provider(seeded, "demo-secondary", priority=1)
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            results = load(clean.url, total=12, concurrency=4)
            if providers(results) == {"demo-secondary"}:
                break
        assert providers(results) == {"demo-secondary"}
    finally:
        edit_provider(seeded, "demo-secondary", priority=20)


def test_health_reports_the_shared_state_and_sync(clean, seeded):
    token = manage("shell", "-c",
                   "from flexiai_django.models import ApiKey; k = ApiKey(name='ops', "
                   "scopes='chat,admin'); t = k.issue(); k.save(); print(t)",
                   env=site_env(seeded)).strip().splitlines()[-1]
    get_store().force(BREAKER, State.FORCED_OPEN)
    body = httpx.get(f"{clean.url}/health", headers={"authorization": f"Bearer {token}"}).json()
    primary = next(p for p in body["providers"] if p["name"] == "demo-primary")
    assert (primary["circuit_state"], primary["available"]) == ("forced_open", False)
    assert body["status"] == "degraded"
    assert body["redis_connected"] is True


def test_workers_rejoin_the_broadcast_group_after_redis_lost_it(clean):
    """Group membership lives in Redis, which keeps nothing on disk: after a restart or a
    flush every worker is back in the group within seconds, not at the membership expiry."""
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    key = f"asgi:group:{get_settings().CHANNEL_GROUP}"

    def seconds_until_all_joined():
        lost = time.monotonic()
        while client.zcard(key) < WORKERS:
            assert time.monotonic() - lost < REJOIN_SECONDS + 5, "workers never re-joined"
            time.sleep(0.1)  # polling pace only
        return time.monotonic() - lost

    seconds_until_all_joined()  # the test reset flushed Redis just before: a loss too
    client.delete(key)
    took = seconds_until_all_joined()
    print(f"\nall {WORKERS} workers re-joined {took:.1f} s after the loss")
