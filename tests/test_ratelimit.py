"""Per-key limits: exact in any 60-second window, shared by workers, safe when Redis dies."""

import multiprocessing
import os
import uuid
from collections import deque
from concurrent.futures import ProcessPoolExecutor

import pytest
import redis as redis_lib

from flexiai_django.ratelimit import RateLimiter, decide
from flexiai_django.testing.clock import FakeClock
from flexiai_django.testing.redis_server import RedisServer

from . import _ratelimit_child


@pytest.fixture
def clock():
    return FakeClock()


def limiter(clock, **options):
    options.setdefault("url", os.environ["REDIS_URL"])
    options.setdefault("key_prefix", f"rl{uuid.uuid4().hex[:6]}")
    return RateLimiter(clock=clock, **options)


def test_the_pure_rule_never_admits_more_than_the_limit_in_any_window():
    log, admitted = deque(), []
    for tick in range(600):
        now = tick * 0.5
        if decide(log, 10, now).allowed:
            admitted.append(now)
    assert all(sum(1 for t in admitted if start <= t < start + 60) <= 10 for start in admitted)
    assert len(admitted) == 50


def test_exactly_the_limit_then_a_refusal_that_says_when(clock):
    rl = limiter(clock)
    decisions = [rl.hit("k", 3) for _ in range(3)]
    assert [d.remaining for d in decisions] == [2, 1, 0]
    clock.advance(20)
    refused = rl.hit("k", 3)
    assert not refused.allowed and refused.retry_after == pytest.approx(40)
    clock.advance(40)
    assert rl.hit("k", 3).allowed


def test_two_workers_share_one_budget_and_keys_are_independent(clock):
    first = limiter(clock)
    second = limiter(clock, key_prefix=first._prefix)
    assert first.hit("k", 2).allowed and second.hit("k", 2).allowed
    assert not first.hit("k", 2).allowed and not second.hit("k", 2).allowed
    assert first.hit("other", 2).allowed


def test_idle_keys_expire(clock):
    rl = limiter(clock)
    rl.hit("k", 5)
    client = redis_lib.Redis.from_url(os.environ["REDIS_URL"])
    assert 0 < client.pttl(f"{rl._prefix}:rate:{{k}}") <= 60_000


def test_zero_means_unlimited_without_redis():
    rl = RateLimiter(url="redis://127.0.0.1:1/0")
    assert all(rl.hit("k", 0).allowed for _ in range(100))
    assert rl._script is None


def test_a_dead_redis_falls_back_to_counting_here_and_comes_back():
    with RedisServer() as own:
        rl = RateLimiter(url=own.url, retry_seconds=0)
        assert rl.hit("k", 2).allowed and rl.connected
        own.kill()
        assert rl.hit("k", 2).allowed and not rl.connected
        assert rl.hit("k", 2).allowed
        assert not rl.hit("k", 2).allowed
        own.start()
        assert rl.hit("k", 2).allowed and rl.connected


@pytest.mark.asyncio
async def test_ahit_from_async_code(clock):
    rl = limiter(clock)
    assert (await rl.ahit("k", 1)).allowed
    assert not (await rl.ahit("k", 1)).allowed


def test_four_processes_hammering_one_key_get_exactly_the_limit():
    prefix = f"rl{uuid.uuid4().hex[:6]}"
    ctx = multiprocessing.get_context("spawn")
    manager = ctx.Manager()
    barrier = manager.Barrier(4)
    try:
        with ProcessPoolExecutor(4, mp_context=ctx) as pool:
            futures = [pool.submit(_ratelimit_child.hammer, os.environ["REDIS_URL"], prefix,
                                   barrier, 50, 60) for _ in range(4)]
            allowed = sum(f.result(timeout=60) for f in futures)
    finally:
        manager.shutdown()
    assert allowed == 60
