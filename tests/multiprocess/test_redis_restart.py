"""A Redis restarted empty under two real uvicorn workers: a dead provider's breaker stays
open (the workers write it back) and the provider gets no new round of failures."""

import time

import pytest

from flexiai_django.breakers.redis_store import RedisBreakerStore
from flexiai_django.testing.redis_server import RedisServer

from .conftest import BREAKER, load, local_state, start, wait_until_every_worker

pytestmark = [pytest.mark.slow, pytest.mark.django_db]
WORKERS = 2


def test_a_dead_providers_breaker_stays_open_across_a_redis_restarted_empty(
        seeded, fake_upstream):
    with RedisServer() as own_redis:
        site = start("uvicorn", seeded, workers=WORKERS, REDIS_URL=own_redis.url)
        try:
            fake_upstream.set_fault("demo-primary", status=500)
            assert {status for status, _ in load(site.url, total=30, concurrency=2)} == {200}
            wait_until_every_worker(site.url, WORKERS, lambda v: local_state(v) == "open")
            tripped = fake_upstream.hits("demo-primary")

            own_redis.stop()
            own_redis.start()  # empty: no persistence
            shared = RedisBreakerStore(url=own_redis.url)
            key = shared._keys(BREAKER)[0]
            started = time.monotonic()
            while shared._redis().hget(key, "state") != b"open":
                assert time.monotonic() - started < 15, "no worker wrote the breaker back"
                time.sleep(0.05)
            print(f"\nbreaker back in Redis {time.monotonic() - started:.2f} s after restart")

            after = load(site.url, total=40, concurrency=2)
            assert {status for status, _ in after} == {200}
            assert {body.get("provider") for _, body in after} == {"demo-secondary"}
            assert fake_upstream.hits("demo-primary") == tripped
            wait_until_every_worker(site.url, WORKERS, lambda v: local_state(v) == "open")
        finally:
            site.stop()
