"""Both stores obey the same rules (state.py in Python, breaker.lua in Redis).

Every scenario runs against the in-process store and the Redis store with one injected
clock, so the Lua script cannot drift from the pure state machine unnoticed.
"""

import os
import time
import uuid

import pytest
import redis as redis_lib

from flexiai_django import signals
from flexiai_django.breakers.memory import LocalBreakerStore
from flexiai_django.breakers.redis_store import RedisBreakerStore
from flexiai_django.breakers.state import BreakerConfig, BreakerState, State
from flexiai_django.testing.clock import FakeClock
from flexiai_django.testing.redis_server import RedisServer

CFG = BreakerConfig(failure_threshold=3, success_threshold=2, open_seconds=10,
                    max_open_seconds=25, jitter=0.0, half_open_max_calls=2, probe_ttl=5)


@pytest.fixture
def clock():
    return FakeClock()


def redis_store(clock, **options):
    return RedisBreakerStore(url=os.environ["REDIS_URL"], clock=clock, rand=lambda: 0.5,
                             key_prefix=f"t{uuid.uuid4().hex[:8]}", **options)


@pytest.fixture(params=["local", "redis"])
def store(request, clock):
    if request.param == "local":
        yield LocalBreakerStore(clock=clock, rand=lambda: 0.5)
    else:
        s = redis_store(clock)
        yield s
        s.clear()


def fail(store, n=1, probe=False):
    for _ in range(n):
        state = store.record("b", CFG, success=False, probe=probe, error="timeout")
    return state


def test_threshold_failures_open_the_breaker(store, clock):
    fail(store, 2)
    assert store.get("b").state is State.CLOSED
    state = fail(store)
    assert state.state is State.OPEN
    assert state.retry_at == pytest.approx(clock.now + 10)
    assert (state.openings, state.last_error, state.total_failures) == (1, "timeout", 3)


def test_open_rejects_then_half_opens_and_caps_probes(store, clock):
    fail(store, 3)
    rejected = store.acquire("b", CFG)
    assert not rejected.allowed and rejected.retry_after == pytest.approx(10)
    clock.advance(10)
    first, second, third = (store.acquire("b", CFG) for _ in range(3))
    assert (first.allowed, first.probe, first.transitioned) == (True, True, True)
    assert (second.allowed, second.probe) == (True, True)
    assert not third.allowed and third.retry_after == pytest.approx(5)
    assert store.get("b").state is State.HALF_OPEN


def test_expired_probe_reservations_free_their_slots(store, clock):
    fail(store, 3)
    clock.advance(10)
    store.acquire("b", CFG)
    store.acquire("b", CFG)
    clock.advance(5.5)
    assert store.acquire("b", CFG).allowed


def test_probe_successes_close_it(store, clock):
    fail(store, 3)
    clock.advance(10)
    store.acquire("b", CFG)
    store.acquire("b", CFG)
    assert store.record("b", CFG, success=True, probe=True).state is State.HALF_OPEN
    closed = store.record("b", CFG, success=True, probe=True)
    assert (closed.state, closed.failures, closed.openings) == (State.CLOSED, 0, 0)
    assert store.acquire("b", CFG).allowed


def test_a_failed_probe_reopens_for_longer(store, clock):
    fail(store, 3)
    clock.advance(10)
    store.acquire("b", CFG)
    state = fail(store, probe=True)
    assert (state.state, state.openings) == (State.OPEN, 2)
    assert state.retry_at == pytest.approx(clock.now + 20)


def test_a_released_probe_frees_its_slot(store, clock):
    fail(store, 3)
    clock.advance(10)
    store.acquire("b", CFG)
    store.acquire("b", CFG)
    store.record("b", CFG, success=None, probe=True)
    assert store.acquire("b", CFG).allowed


def test_success_ends_a_failure_streak(store):
    fail(store, 2)
    store.record("b", CFG, success=True, probe=False)
    fail(store, 2)
    assert store.get("b").state is State.CLOSED


def test_overrides(store):
    assert store.force("b", State.FORCED_OPEN).state is State.FORCED_OPEN
    assert not store.acquire("b", CFG).allowed
    store.force("b", State.DISABLED)
    admission = store.acquire("b", CFG)
    assert admission.allowed and not admission.recorded
    assert fail(store, 5).state is State.DISABLED
    reset = store.force("b", State.CLOSED)
    assert (reset.state, reset.failures, reset.last_error) == (State.CLOSED, 0, None)


def test_versions_only_grow(store, clock):
    seen = [store.get("b").version]
    for step in (lambda: fail(store, 3), lambda: clock.advance(10),
                 lambda: store.acquire("b", CFG), lambda: fail(store, probe=True),
                 lambda: store.force("b", State.CLOSED)):
        step()
        seen.append(store.get("b").version)
    assert seen == sorted(seen) and seen[-1] > seen[0]


def test_all_lists_every_breaker_used(store):
    store.acquire("one", CFG)
    fail(store)
    assert {"one", "b"} <= set(store.all())


def test_an_active_probe_success_closes_an_open_breaker_before_its_open_period(store, clock):
    fail(store, 3)
    clock.advance(1)
    counted = store.record_active_probe("b", CFG, ok=True)
    assert (counted.state, counted.successes, counted.active_probes) == (State.OPEN, 1, 1)
    assert counted.last_probe == "ok" and counted.last_probe_at == pytest.approx(clock.now)
    closed = store.record_active_probe("b", CFG, ok=True)  # success_threshold is 2
    assert (closed.state, closed.openings, closed.active_probes) == (State.CLOSED, 0, 2)
    assert closed.version > counted.version
    assert store.acquire("b", CFG).allowed


def test_a_failed_active_probe_neither_extends_nor_doubles_the_open_period(store, clock):
    opened = fail(store, 3)
    store.record_active_probe("b", CFG, ok=True)
    clock.advance(4)
    failed = store.record_active_probe("b", CFG, ok=False, error="server_error")
    assert (failed.state, failed.openings, failed.retry_at) == (State.OPEN, 1, opened.retry_at)
    assert (failed.successes, failed.last_error, failed.last_probe) == (0, "server_error",
                                                                       "failed")
    assert failed.last_failure_at == pytest.approx(clock.now)
    assert failed.total_failures == opened.total_failures
    assert failed.version == opened.version + 2  # each probe is broadcast
    clock.advance(6)
    assert store.acquire("b", CFG).probe  # the open period ended when it always would have


def test_an_active_probe_changes_nothing_unless_the_breaker_is_open(store, clock):
    assert store.record_active_probe("b", CFG, ok=False).version == 0
    fail(store, 3)
    clock.advance(10)
    store.acquire("b", CFG)
    half_open = store.get("b")
    assert store.record_active_probe("b", CFG, ok=True) == half_open
    forced = store.force("b", State.FORCED_OPEN)
    assert store.record_active_probe("b", CFG, ok=True) == forced


def test_probe_figures_last_for_an_outage_and_reset_clears_them(store, clock):
    fail(store, 3)
    store.record_active_probe("b", CFG, ok=False)
    clock.advance(10)
    store.acquire("b", CFG)
    reopened = fail(store, probe=True)  # half-open -> open: the same outage
    assert reopened.active_probes == 1
    reset = store.force("b", State.CLOSED)
    assert (reset.active_probes, reset.last_probe, reset.last_probe_at) == (0, None, None)


def test_a_lease_has_one_holder_until_its_holder_settles_it(store):
    token = store.take_lease("b", 30)
    assert token is not None
    assert store.take_lease("b", 30) is None
    assert store.take_lease("other", 30) is not None
    store.settle_lease("b", "not-the-holder", 0)
    assert store.take_lease("b", 30) is None
    store.settle_lease("b", token, 0)
    assert store.take_lease("b", 30) is not None


def test_a_local_lease_ends_by_itself_on_the_clock(clock):
    store = LocalBreakerStore(clock=clock)
    token = store.take_lease("b", 5)
    store.settle_lease("b", token, 2)
    clock.advance(1.9)
    assert store.take_lease("b", 5) is None
    clock.advance(0.2)
    assert store.take_lease("b", 5) is not None


# -- Redis only --------------------------------------------------------------------------

def commands_processed(client):
    return client.info("stats")["total_commands_processed"]


def test_the_closed_hot_path_makes_no_redis_call(clock):
    store = redis_store(clock)
    store.acquire("b", CFG)
    client = redis_lib.Redis.from_url(os.environ["REDIS_URL"])
    before = commands_processed(client)
    for _ in range(100):
        admission = store.acquire("b", CFG)
        store.record("b", CFG, success=True, probe=admission.probe)
    assert commands_processed(client) - before == 1  # the INFO call itself


def test_failures_from_different_workers_add_up(clock):
    workers = [redis_store(clock, snapshot_ttl=0) for _ in range(3)]
    workers[1]._prefix = workers[2]._prefix = workers[0]._prefix
    for worker in workers:
        worker.record("b", CFG, success=False, probe=False)
    assert all(w.acquire("b", CFG).allowed is False for w in workers)


def test_a_worker_with_recent_failures_asks_redis_before_calling(clock):
    a, b = redis_store(clock), redis_store(clock)
    b._prefix = a._prefix
    b.record("b", CFG, success=False, probe=False)
    assert a.acquire("b", CFG).allowed  # no snapshot yet: a asks Redis, still closed
    a.record("b", CFG, success=False, probe=False)
    a.record("b", CFG, success=False, probe=False)
    assert not b.acquire("b", CFG).allowed


def test_a_transition_names_the_state_it_left_even_from_a_worker_that_never_saw_it(clock):
    maker, late = redis_store(clock), redis_store(clock)
    late._prefix = maker._prefix
    fail(maker, 3)
    clock.advance(10)
    heard = []

    def listen(sender, name, before, after, **kwargs):
        heard.append((before.state, after.state))

    signals.breaker_transition.connect(listen)
    try:
        assert late.acquire("b", CFG).probe  # late's snapshot: none, which reads as closed
    finally:
        signals.breaker_transition.disconnect(listen)
    assert heard == [(State.OPEN, State.HALF_OPEN)]


def test_a_newer_broadcast_replaces_the_snapshot_and_an_older_one_does_not(clock):
    store = redis_store(clock)
    opened = fail(store, 3)
    older = store.get("b")
    store.force("b", State.CLOSED)
    assert not store.apply_remote("b", older)
    assert store.apply_remote("b", opened.__class__(state=State.FORCED_OPEN,
                                                    version=opened.version + 10))
    assert not store.acquire("b", CFG).allowed


def test_a_read_does_not_undo_a_newer_broadcast_that_arrived_while_it_was_on_the_wire(clock):
    store = redis_store(clock)
    stale = store.get("b")
    started = time.monotonic()
    assert store.apply_remote("b", BreakerState(state=State.FORCED_OPEN,
                                                version=stale.version + 1))
    assert store.take_read("b", stale, started).state is State.FORCED_OPEN
    assert not store.acquire("b", CFG).allowed


def test_a_read_wins_over_an_older_snapshot_even_with_a_lower_version(clock):
    """Redis lost the breaker and another worker wrote it again: versions started again,
    and Redis is still the truth."""
    store = redis_store(clock)
    store.apply_remote("b", BreakerState(state=State.FORCED_OPEN, version=50))
    started = time.monotonic()
    assert store.take_read("b", BreakerState(), started).state is State.CLOSED
    assert store.acquire("b", CFG).allowed


def test_a_dead_redis_falls_back_to_local_breakers_fast_and_resyncs():
    with RedisServer() as server:
        store = RedisBreakerStore(url=server.url, retry_seconds=0.0)
        fail(store, 3)
        assert store.get("b").state is State.OPEN
        server.kill()
        fresh = BreakerConfig(failure_threshold=3)
        admission = store.acquire("other", fresh)
        assert admission.allowed and not store.connected
        assert store.describe()["connected"] is False
        fail(store, 3)
        assert store._local.get("b").state is State.OPEN
        server.start()
        assert store.ping() and store.connected
        # A fresh Redis lost "b": this worker's open state is written back, not dropped.
        assert store.get("b").state is State.OPEN


@pytest.mark.asyncio
async def test_async_calls_that_need_redis_run_off_the_event_loop(clock, monkeypatch):
    import threading

    store = redis_store(clock)
    loop_thread = threading.get_ident()
    threads = []
    real_eval = store._eval

    def spying_eval(*args, **kwargs):
        threads.append(threading.get_ident())
        return real_eval(*args, **kwargs)

    monkeypatch.setattr(store, "_eval", spying_eval)
    await store.aacquire("b", CFG)
    await store.arecord("b", CFG, success=False, probe=False, error="x")
    calls_before = len(threads)
    await store.aacquire("b", CFG)  # recent failures: must ask Redis
    assert len(threads) == calls_before + 1
    assert loop_thread not in threads
    assert (await store.aget("b")).failures == 1


def test_snapshots_show_what_this_worker_would_decide_from(clock):
    a, b = redis_store(clock), redis_store(clock)
    b._prefix = a._prefix
    a.acquire("b", CFG)
    b.force("b", State.FORCED_OPEN)
    assert a.snapshots()["b"].state is State.CLOSED  # a has not heard yet
    assert a.get("b").state is State.FORCED_OPEN
    assert a.snapshots()["b"].state is State.FORCED_OPEN


def test_a_redis_lease_is_one_key_shared_by_every_worker_and_ends_by_itself(clock):
    a, b = redis_store(clock), redis_store(clock)
    b._prefix = a._prefix
    token = a.take_lease("llm:x", 5)
    assert token is not None and b.take_lease("llm:x", 5) is None
    client = redis_lib.Redis.from_url(os.environ["REDIS_URL"])
    assert client.get(f"{a._prefix}:probe-lease:llm:x").decode() == token
    a.settle_lease("llm:x", token, 0.05)
    deadline = time.monotonic() + 2
    while b.take_lease("llm:x", 5) is None:
        assert time.monotonic() < deadline, "the settled lease never ended"
        time.sleep(0.01)
    client.delete(f"{a._prefix}:probe-lease:llm:x")
# -- cooldown (a provider's Retry-After), both stores --------------------------------------


def test_a_cooldown_refuses_calls_until_it_ends(store, clock):
    state = store.cool_down("b", CFG, 5)
    assert state.cooldown_until == pytest.approx(clock.now + 5)
    assert (state.state, state.failures) == (State.CLOSED, 0)
    clock.advance(1)
    refused = store.acquire("b", CFG)
    assert not refused.allowed and refused.cooling_down
    assert refused.retry_after == pytest.approx(4)
    clock.advance(4)
    admitted = store.acquire("b", CFG)
    assert admitted.allowed and not admitted.cooling_down


def test_a_cooldown_is_capped_extends_and_never_shortens(store, clock):
    assert store.cool_down("b", CFG, 3600).cooldown_until == pytest.approx(clock.now + 25)
    assert store.cool_down("b", CFG, 1).cooldown_until == pytest.approx(clock.now + 25)
    version = store.get("b").version
    clock.advance(20)
    assert store.cool_down("b", CFG, 10).cooldown_until == pytest.approx(clock.now + 10)
    assert store.get("b").version == version + 1


def test_a_cooldown_with_failures_then_a_success_after_it(store, clock):
    fail(store, 1)
    store.cool_down("b", CFG, 5)
    assert not store.acquire("b", CFG).allowed
    clock.advance(5)
    assert store.acquire("b", CFG).allowed
    after = store.record("b", CFG, success=True, probe=False)
    assert (after.failures, after.cooldown_until) == (0, None)


def test_a_reset_and_overrides_end_or_outrank_a_cooldown(store):
    store.cool_down("b", CFG, 5)
    store.force("b", State.DISABLED)
    assert store.acquire("b", CFG).allowed
    assert store.force("b", State.CLOSED).cooldown_until is None
    assert store.acquire("b", CFG).allowed


# -- cooldown across workers (Redis) -----------------------------------------------------------


def test_a_cooldown_reaches_another_worker_whose_snapshot_said_closed(clock):
    """The other worker's snapshot (closed, clean) would admit without asking Redis: the
    cooldown's broadcast, or its next re-read, must hold it back."""
    a, b = redis_store(clock), redis_store(clock)
    b._prefix = a._prefix
    assert b.acquire("b", CFG).allowed  # b now has a fresh, clean snapshot
    cooled = a.cool_down("b", CFG, 5)
    assert b.apply_remote("b", BreakerState.from_dict(cooled.to_dict()))  # the broadcast
    client = redis_lib.Redis.from_url(os.environ["REDIS_URL"])
    before = commands_processed(client)
    refused = b.acquire("b", CFG)
    assert commands_processed(client) - before == 1  # decided from the snapshot
    assert not refused.allowed and refused.cooling_down
    assert refused.retry_after == pytest.approx(5)
    b._snapshots.clear()  # no broadcast heard: Redis says the same
    assert not b.acquire("b", CFG).allowed


def test_a_cooldown_is_announced_like_a_transition(clock):
    store = redis_store(clock)
    heard = []

    def listen(sender, name, before, after, **kwargs):
        heard.append(after.cooldown_until)

    signals.breaker_transition.connect(listen)
    try:
        store.cool_down("b", CFG, 5)
    finally:
        signals.breaker_transition.disconnect(listen)
    assert heard == [pytest.approx(clock.now + 5)]


def test_a_cooldown_of_nothing_or_forever_is_handled(store, clock):
    assert store.cool_down("b", CFG, 0).cooldown_until is None
    assert store.cool_down("b", CFG, float("nan")).cooldown_until is None
    assert store.cool_down("b", CFG, float("inf")).cooldown_until == pytest.approx(clock.now + 25)
