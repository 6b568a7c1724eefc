"""Per-key rate limits: exactly ``per_minute`` in any 60-second window, one budget for every
worker through Redis, and still answering (in-process) when Redis is gone."""

import logging
import multiprocessing
import os
import random
import threading
import time
import uuid

import pytest
import redis as redis_lib
from django.test import override_settings
from hypothesis import given
from hypothesis import strategies as st

from flexiai_django.ratelimit import WINDOW_US, RateDecision, RateLimiter, decide
from flexiai_django.testing.clock import FakeClock
from flexiai_django.testing.redis_server import RedisServer

from . import _ratelimit_child

DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1: any call would fail


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def prefix():
    return f"rl-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def make(clock, prefix):
    """Limiters on the test Redis that share a prefix and a clock: workers of one site."""

    def build(**options):
        options = {"url": os.environ["REDIS_URL"], "key_prefix": prefix, "clock": clock,
                   **options}
        return RateLimiter(**options)

    return build


@pytest.fixture
def raw():
    client = redis_lib.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    yield client
    client.close()


def micros(clock):
    return round(clock() * 1_000_000)


def busiest_window(times_us):
    """The most admissions inside any half-open 60-second interval [t, t + 60)."""
    ordered = sorted(times_us)
    return max((sum(1 for u in ordered if t <= u < t + WINDOW_US) for t in ordered), default=0)


# -- the rule, in pure Python -------------------------------------------------------------

@given(st.integers(1, 8), st.lists(st.integers(0, 20_000_000), max_size=80))
def test_the_pure_rule_admits_at_most_the_limit_in_any_window_and_says_exactly_when(
        limit, gaps):
    log, admitted, now = [], [], 0
    for gap in gaps:
        now += gap
        before = list(log)
        decision = decide(log, limit, now)
        if decision.allowed:
            admitted.append(now)
            assert decision.retry_after == 0
            assert decision.remaining == limit - sum(1 for t in admitted if t > now - WINDOW_US)
        else:
            assert sum(1 for t in admitted if t > now - WINDOW_US) >= limit, "refused only if full"
            wait = round(decision.retry_after * 1_000_000)
            assert not decide(list(before), limit, now + wait - 1).allowed
            assert decide(list(before), limit, now + wait).allowed
    assert busiest_window(admitted) <= limit


def test_the_pure_rule_forgets_a_request_exactly_60_seconds_later():
    log = []
    assert decide(log, 1, 0).allowed
    assert decide(log, 1, WINDOW_US - 1) == RateDecision(False, 1, 0, 1e-6)
    assert decide(log, 1, WINDOW_US) == RateDecision(True, 1, 0, 0.0)


# -- through Redis --------------------------------------------------------------------------

def test_a_limit_of_n_admits_exactly_n_then_refuses_with_the_exact_wait(make, clock):
    limiter = make()
    decisions = []
    for _ in range(3):
        decisions.append(limiter.hit("client", 3))
        clock.advance(10)
    assert decisions == [RateDecision(True, 3, 2, 0.0), RateDecision(True, 3, 1, 0.0),
                         RateDecision(True, 3, 0, 0.0)]
    assert limiter.hit("client", 3) == RateDecision(False, 3, 0, 30.0)  # first one is 30 s old
    clock.advance(30 - 1e-6)
    refused = limiter.hit("client", 3)
    assert not refused.allowed and refused.retry_after == pytest.approx(1e-6)
    clock.advance(1e-6)
    assert limiter.hit("client", 3) == RateDecision(True, 3, 0, 0.0)
    assert limiter.connected


def test_capacity_returns_as_requests_age_out_of_the_window(make, clock):
    limiter = make()
    for _ in range(3):
        assert limiter.hit("client", 3).allowed
        clock.advance(10)  # admitted at 0, 10, 20
    clock.advance(30)  # now 60: the request from 0 has left the window
    assert limiter.hit("client", 3) == RateDecision(True, 3, 0, 0.0)
    assert limiter.hit("client", 3) == RateDecision(False, 3, 0, 10.0)
    clock.advance(60)
    assert [limiter.hit("client", 3).remaining for _ in range(3)] == [2, 1, 0]


def test_no_60_second_window_ever_holds_more_than_the_limit(make, clock):
    limiter, rng, admitted = make(), random.Random(7), []
    for _ in range(400):
        clock.advance(rng.randint(0, 1_500_000) / 1_000_000)
        decision = limiter.hit("client", 7)
        if decision.allowed:
            admitted.append(micros(clock))
        else:
            assert sum(1 for t in admitted if t > micros(clock) - WINDOW_US) == 7
    assert busiest_window(admitted) == 7
    assert len(admitted) > 7 * (clock() - 1_000_000) / 60 - 7, "as many as the rule allows"


def test_redis_and_in_process_counting_decide_alike(make, clock):
    in_redis, in_process = make(), RateLimiter(clock=clock, shared=False)
    rng = random.Random(11)
    for _ in range(300):
        clock.advance(rng.randint(0, 3_000_000) / 1_000_000)
        limit = rng.choice([2, 5, 5, 5])  # a lowered limit waits for the excess to age out
        assert in_redis.hit("client", limit) == in_process.hit("client", limit)
    assert in_redis.connected and not in_process.connected


def test_two_workers_share_one_budget(make):
    first, second = make(), make()  # two processes' limiters, same Redis and prefix
    assert first.hit("client", 3).remaining == 2
    assert second.hit("client", 3).remaining == 1
    assert first.hit("client", 3).remaining == 0
    assert not second.hit("client", 3).allowed
    assert not first.hit("client", 3).allowed


def test_keys_are_independent(make):
    limiter = make()
    assert [limiter.hit("alice", 2).allowed for _ in range(3)] == [True, True, False]
    assert limiter.hit("bob", 2) == RateDecision(True, 2, 1, 0.0)


def test_a_prefix_is_a_separate_budget(make):
    assert make(key_prefix="site-a").hit("client", 1).allowed
    assert make(key_prefix="site-b").hit("client", 1).allowed


@pytest.mark.parametrize("per_minute", [0, -5])
def test_unlimited_makes_no_redis_call(per_minute):
    limiter = RateLimiter(url=DEAD_REDIS)
    decisions = {limiter.hit("client", per_minute) for _ in range(100)}
    assert decisions == {RateDecision(True, 0, 0, 0.0)}
    assert limiter.connected, "a Redis call would have failed and switched to in-process"


def test_keys_carry_a_ttl_so_idle_clients_leave_nothing_behind(make, raw, prefix):
    limiter = make()
    limiter.hit("client", 1)
    limiter.hit("client", 1)  # refused: still exactly one key, still expiring
    assert raw.keys(f"{prefix}:*") == [f"{prefix}:rate:{{client}}"]  # hash-tagged for Cluster
    assert 0 < raw.pttl(f"{prefix}:rate:{{client}}") <= 60_000
    assert raw.zcard(f"{prefix}:rate:{{client}}") == 1, "refusals are not recorded"


@pytest.mark.slow
@override_settings(FLEXIAI={"RATE_LIMIT_FALLBACK": "share", "RATE_LIMIT_FALLBACK_WORKERS": 1})
def test_a_dead_redis_is_answered_in_process_fast_and_redis_is_used_again_later(
        prefix, clock, caplog):
    server = RedisServer().start()
    try:
        limiter = RateLimiter(url=server.url, key_prefix=prefix, clock=clock, retry_seconds=5)
        assert limiter.hit("client-7f3a", 2).allowed and limiter.connected
        server.kill()

        started = time.perf_counter()
        with caplog.at_level(logging.WARNING, logger="flexiai_django"):
            decisions = [limiter.hit("client-7f3a", 2) for _ in range(100)]
        assert time.perf_counter() - started < 1.0, "one failed call, then no more attempts"
        assert not limiter.connected
        # In-process counting starts empty and applies the same rule:
        assert decisions[:3] == [RateDecision(True, 2, 1, 0.0), RateDecision(True, 2, 0, 0.0),
                                 RateDecision(False, 2, 0, 60.0)]
        assert "lost Redis" in caplog.text and "client-7f3a" not in caplog.text

        server.start()
        assert not limiter.hit("client-7f3a", 2).allowed  # still inside retry_seconds
        assert not limiter.connected
        clock.advance(5)
        # The server is known to answer again once a background PING found it so.
        deadline = time.monotonic() + 5
        while not limiter._outage.retry_due:
            assert time.monotonic() < deadline, "the server's probe never found it back"
            time.sleep(0.02)
        assert limiter.hit("client-7f3a", 2) == RateDecision(True, 2, 1, 0.0)  # Redis again
        assert limiter.connected
        back = redis_lib.Redis.from_url(server.url)
        assert back.zcard(limiter.key_name("client-7f3a")) == 1
        back.close()
    finally:
        server.close()


@pytest.mark.asyncio
async def test_ahit_works_from_async_code_with_redis_io_off_the_event_loop(prefix):
    threads = []

    class Watched(RateLimiter):
        def hit(self, key, per_minute):
            threads.append(threading.get_ident())
            return super().hit(key, per_minute)

    limiter = Watched(url=os.environ["REDIS_URL"], key_prefix=prefix)  # Redis TIME, no clock
    assert [(await limiter.ahit("client", 2)).allowed for _ in range(2)] == [True, True]
    refused = await limiter.ahit("client", 2)
    assert not refused.allowed and 59 < refused.retry_after <= 60
    assert threads and threading.get_ident() not in threads
    assert await limiter.ahit("client", 0) == RateDecision(True, 0, 0, 0.0)


@pytest.mark.slow
def test_four_processes_hammering_one_key_get_exactly_the_limit(prefix):
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    workers = [ctx.Process(target=_ratelimit_child.hammer,
                           args=(os.environ["REDIS_URL"], prefix, barrier, results, 50, 60))
               for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        reports = [results.get(timeout=120) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()

    assert all(connected for _, connected in reports), "every worker counted in Redis"
    decisions = [decision for made, _ in reports for decision in made]
    assert len(decisions) == 200
    assert sum(allowed for allowed, _ in decisions) == 60
    # Atomic: each admission saw a distinct count, so the remainders are 59..0, once each.
    assert sorted(left for allowed, left in decisions if allowed) == list(range(60))
