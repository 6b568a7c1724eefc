"""A frozen Redis (SIGSTOP) under concurrent in-process load.

A frozen server accepts connections and answers nothing, so every command waits out its
socket timeout (0.25 s here). The first timeout met by any user of the server (rate
limiter, breaker store, answer cache, hedge budget) must keep *every* user in the
process off it: only the requests already waiting inside Redis at the freeze may be
slow, never one per back-off per component. The test's own ``redis-server`` is frozen,
never the shared one.
"""

import asyncio
import gc
import json
import logging
import os
import signal
import time
from contextlib import contextmanager

import pytest
from django.test import AsyncClient, override_settings

from flexiai_django import cache_tier
from flexiai_django.testing.redis_server import RedisServer

pytestmark = pytest.mark.django_db(transaction=True)

CONCURRENCY = 8
SLOW = 0.2  # seconds: a request slower than this waited out a Redis timeout (0.25 s)
BODY = json.dumps({"model": "primary", "messages": [{"role": "user", "content": "hi"}]})


@pytest.fixture(scope="module")
def server():
    with RedisServer() as own:
        yield own


@contextmanager
def frozen(server):
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.process.pid, signal.SIGCONT)


@pytest.fixture
def on_own_redis(server, make_provider):
    """Store, limiter (on the store's Redis), answer cache and hedge budget on the test's
    own server, every request counted by the limiter and its answer written to the cache."""
    make_provider("primary", priority=1)
    options = {"url": server.url, "socket_timeout": 0.25, "connect_timeout": 0.25}
    caches = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "answers": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": server.url,
                    "OPTIONS": {"SOCKET_TIMEOUT": 0.25, "SOCKET_CONNECT_TIMEOUT": 0.25}},
    }
    flexiai = {
        "BREAKER_STORE": {"BACKEND": "flexiai_django.breakers.redis_store.RedisBreakerStore",
                          "OPTIONS": options},
        "ALLOW_ANONYMOUS_LOOPBACK": True,
        "ANONYMOUS_RATE_LIMIT_PER_MINUTE": 1_000_000,  # counted in Redis, never refused
        "CACHE_ENABLED": True,
        "CACHE_ALIAS": "answers",
    }
    with override_settings(CACHES=caches, FLEXIAI=flexiai):
        cache_tier.forget_outage()
        yield
    cache_tier.forget_outage()


async def load(seconds, during=None):
    """``CONCURRENCY`` clients posting for ``seconds``; ``during`` runs meanwhile.
    Returns each request's (status, latency in seconds)."""
    client = AsyncClient()
    results = []
    stop = time.monotonic() + seconds

    async def one_client():
        while time.monotonic() < stop:
            started = time.perf_counter()
            response = await client.post("/v1/chat/completions", BODY,
                                         content_type="application/json")
            results.append((response.status_code, time.perf_counter() - started, started))

    await asyncio.gather(*(one_client() for _ in range(CONCURRENCY)))
    return results


def slow(results, after=0.0):
    return [round(latency, 3) for _, latency, started in results
            if latency > SLOW and started >= after]


def p(results, q):
    latencies = sorted(latency for _, latency, _ in results)
    return latencies[min(len(latencies) - 1, int(q * len(latencies)))]


async def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def health():
    return (await AsyncClient().get("/health")).json()


@pytest.mark.asyncio
async def test_a_frozen_redis_costs_only_the_requests_already_waiting_on_it(
        server, on_own_redis, caplog):
    await load(0.3)  # warm: connections, provider snapshot, breaker keys
    # A full collection over the suite's heap stalls every request at once: not Redis.
    gc.collect()
    gc.freeze()
    try:
        before = await load(1.0)
        with caplog.at_level(logging.WARNING, logger="flexiai_django"), frozen(server):
            frozen_at = time.perf_counter()
            during = await load(3.0)
            frozen_health = await health()
    finally:
        gc.unfreeze()
    assert {status for status, _, _ in before + during} == {200}, "never an error"
    # Those waiting inside Redis at the freeze pay one timeout each; no one else does
    # (before the change: all of them again after each 1 s back-off, ~16 more here).
    assert len(slow(during)) <= 2 * CONCURRENCY, (slow(during), len(during))
    late = slow(during, after=frozen_at + 0.3)
    assert len(late) <= 4, (late, len(during), slow(before))
    assert p(during, 0.5) < p(before, 0.5) + 0.05, (p(before, 0.5), p(during, 0.5))
    assert frozen_health["redis_connected"] is False
    assert frozen_health["sync_enabled"] is False, "breaker state is not shared meanwhile"
    print(f"\nbefore: {len(before)} requests, p50 {p(before, .5) * 1000:.1f} ms, "
          f"p99 {p(before, .99) * 1000:.1f} ms; frozen: {len(during)} requests, "
          f"p50 {p(during, .5) * 1000:.1f} ms, p99 {p(during, .99) * 1000:.1f} ms, "
          f"{len(slow(during))} over {SLOW * 1000:.0f} ms")

    # Each part logs the outage once, whatever the number of requests and retries.
    for lost in ("Redis at 127.0.0.1:", "breaker store lost Redis",
                 "rate limiter lost Redis", "answer cache failing"):
        assert caplog.text.count(lost) <= 1, lost
    assert caplog.text.count("rate limiter lost Redis") == 1


@pytest.mark.asyncio
async def test_each_part_logs_once_per_outage_and_comes_back_once(
        server, on_own_redis, caplog):
    await load(0.5)
    with caplog.at_level(logging.WARNING, logger="flexiai_django"):
        for _ in range(2):
            with frozen(server):
                await load(1.5)
            # Requests bring each part back (its own probe write) once a PING found
            # the server answering again.
            await wait_for(_back_after_a_request)
    text = caplog.text
    assert text.count("answer cache failing (") == 2, text
    assert text.count("answer cache working again") == 2, text
    assert text.count("rate limiter lost Redis") == 2
    assert text.count("rate limiter reconnected") == 2
    assert text.count("breaker store reconnected") <= 2


async def _back_after_a_request():
    await load(0.05)
    await cache_tier.drain()
    body = await health()
    return body["redis_connected"] is True and body["answer_cache_ok"] is True
