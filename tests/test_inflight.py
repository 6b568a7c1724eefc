"""In-flight slots: leases per provider, in Redis (deployment-wide) or in the process.

The same scenarios run on both stores so the Lua scripts and :class:`LocalSlots` keep in
step; lease expiry is shown on an injected clock locally and on Redis TIME with a short
lease (waiting on the condition, never a fixed sleep).
"""

import time

import pytest
from django.conf import settings
from django.test import override_settings

from flexiai_django.inflight import InflightSlots
from flexiai_django.inflight_local import LocalSlots, TierActivity
from flexiai_django.testing.clock import FakeClock

PREFIX = "flexiai-test-inflight"


def local_slots():
    return InflightSlots(shared=False)


def redis_slots():
    return InflightSlots(url=settings.REDIS_URL, key_prefix=PREFIX)


@pytest.fixture(params=[local_slots, redis_slots], ids=["local", "redis"])
def slots(request):
    made = request.param()
    made.clear()
    yield made
    made.clear()


def test_slots_are_taken_up_to_capacity_and_freed(slots):
    a = slots.acquire("big", capacity=2)
    b = slots.acquire("big", capacity=2)
    assert a is not None and b is not None
    assert slots.acquire("big", capacity=2) is None
    assert slots.counts(["big", "other"]) == {"big": 2, "other": 0}
    slots.release(a)
    slots.release(a)  # twice: harmless
    assert slots.counts(["big"]) == {"big": 1}
    assert slots.acquire("big", capacity=2) is not None


def test_an_uncapped_provider_is_only_counted(slots):
    for _ in range(5):
        assert slots.acquire("open", capacity=None) is not None
    assert slots.counts(["open"]) == {"open": 5}


def test_a_free_sent_by_the_renewing_thread(slots):
    slot = slots.acquire("big", capacity=1)
    slots.release_soon(slot)
    slots.tick()  # what the thread does when woken
    assert slots.counts(["big"]) == {"big": 0}
    assert slots.held() == []


def test_tier_activity_counts_requests_and_overflows(slots):
    slots.acquire("l", 2, tier="large")
    slots.acquire("s", 8, tier="small", overflowed=True)
    slots.acquire("s", 8, tier="small", overflowed=True)
    slots.acquire("x", None)  # no tier: not counted
    assert slots.tier_activity(["large", "small", "none"], 60) == {
        "large": TierActivity(1, 0), "small": TierActivity(2, 2), "none": TierActivity(0, 0)}


def test_a_refused_slot_is_not_counted_as_tier_activity(slots):
    slots.acquire("l", 1, tier="large")
    assert slots.acquire("l", 1, tier="large") is None
    assert slots.tier_activity(["large"], 60)["large"] == TierActivity(1, 0)


def test_every_process_sees_the_same_redis_counts():
    one, two = redis_slots(), redis_slots()
    one.clear()
    try:
        assert one.acquire("big", 2) is not None
        assert two.acquire("big", 2) is not None
        assert one.acquire("big", 2) is None  # the other process's slot counts
        assert one.counts(["big"]) == two.counts(["big"]) == {"big": 2}
    finally:
        one.clear()


def test_local_leases_end_unless_renewed():
    clock = FakeClock()
    local = LocalSlots(clock)
    assert local.acquire("p", "kept", lease=3, capacity=None)
    assert local.acquire("p", "dropped", lease=3, capacity=None)
    clock.advance(2)
    local.renew([("p", "kept")], lease=3)
    clock.advance(2)
    assert local.counts(["p"]) == {"p": 1}
    clock.advance(3)
    assert local.counts(["p"]) == {"p": 0}


def test_local_tier_activity_leaves_the_window():
    clock = FakeClock(0.0)
    local = LocalSlots(clock)
    local.note("large", overflowed=False)
    clock.advance(25)
    local.note("large", overflowed=False)
    assert local.activity(["large"], 10)["large"] == TierActivity(1, 0)
    assert local.activity(["large"], 30)["large"] == TierActivity(2, 0)


def wait_for(check, within):
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "not within the bound"
        time.sleep(0.05)


@override_settings(FLEXIAI={**settings.FLEXIAI, "INFLIGHT_LEASE_SECONDS": 1})
def test_a_dead_workers_redis_slots_expire_after_the_lease():
    dead, alive = redis_slots(), redis_slots()
    dead.clear()
    try:
        started = time.monotonic()
        dead._renew_forever = lambda: None  # a killed worker renews nothing
        assert dead.acquire("big", 1) is not None
        assert alive.acquire("big", 1) is None
        wait_for(lambda: alive.counts(["big"]) == {"big": 0}, within=3)
        assert time.monotonic() - started >= 0.9
        assert alive.acquire("big", 1) is not None
    finally:
        dead.clear()


@override_settings(FLEXIAI={**settings.FLEXIAI, "INFLIGHT_LEASE_SECONDS": 1})
def test_renewed_redis_slots_outlive_the_lease():
    slots = redis_slots()
    slots.clear()
    try:
        slots.acquire("big", 1)
        until = time.monotonic() + 2.5
        while time.monotonic() < until:
            slots.tick()
            assert slots.counts(["big"]) == {"big": 1}
            time.sleep(0.2)
    finally:
        slots.clear()


def test_while_redis_is_out_slots_are_counted_in_the_process(caplog):
    from flexiai_django.testing.redis_server import RedisServer

    with RedisServer() as server:
        slots = InflightSlots(url=server.url, retry_seconds=60)
        assert slots.acquire("big", 1).shared
        server.kill()
        fallback = slots.acquire("other", 1)
        assert fallback is not None and not fallback.shared
        assert slots.acquire("other", 1) is None  # capacity holds in this process
        assert slots.counts(["other"]) == {"other": 1}
        slots.release(fallback)
        assert slots.counts(["other"]) == {"other": 0}
    assert "in-flight counts lost Redis" in caplog.text
