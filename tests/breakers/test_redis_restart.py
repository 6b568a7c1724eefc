"""A Redis restarted empty (or wiped) does not reopen the door to a dead provider.

Each worker writes the OPEN / FORCED_OPEN / DISABLED states it holds back into Redis
where Redis lost them, so a still-dead provider gets no new round of failures; a
deliberate ``clear()`` or ``force(CLOSED)`` still closes the breaker everywhere. A real
``redis-server`` of this module's own is restarted (stop, start on the same port) or
flushed; the two "workers" are two stores sharing one key prefix.
"""

import uuid

import pytest
import redis as redis_lib

from flexiai_django.breakers.redis_store import RedisBreakerStore
from flexiai_django.breakers.state import BreakerConfig, State
from flexiai_django.testing.redis_server import RedisServer

CFG = BreakerConfig(failure_threshold=3, success_threshold=1, open_seconds=600,
                    max_open_seconds=600, jitter=0.0)


@pytest.fixture(scope="module")
def server():
    with RedisServer() as own:
        yield own


@pytest.fixture
def admin(server):
    client = redis_lib.Redis.from_url(server.url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def workers(server):
    """Two workers' stores on one deployment (one key prefix); snapshots never fresh, so
    every decision that is not a known OPEN asks Redis."""
    prefix = f"r{uuid.uuid4().hex[:8]}"
    made = [RedisBreakerStore(url=server.url, key_prefix=prefix, retry_seconds=0.0,
                              snapshot_ttl=0.0) for _ in range(2)]
    yield made
    for store in made:
        store._link.close()


def open_in(store, name="p"):
    for _ in range(CFG.failure_threshold):
        state = store.record(name, CFG, success=False, probe=False, error="timeout")
    assert state.state is State.OPEN
    return state


def in_redis(admin, store, name="p"):
    return admin.hget(f"{store._prefix}:breaker:{{{name}}}", "state")


def restart_empty(server, *stores):
    """Stop and start on the same port (no persistence: it comes back empty); each store
    notices on its next call and reconnects once a write probe passes."""
    server.stop()
    server.start()
    for store in stores:
        assert any(store.ping() for _ in range(20)), "the store never reconnected"


def test_a_restart_keeps_a_workers_open_breaker_and_writes_it_back(server, admin, workers):
    a, b = workers
    opened = open_in(a)
    assert b.get("p").state is State.OPEN
    restart_empty(server, a, b)
    assert in_redis(admin, a) is None  # Redis forgot it
    a.refresh()
    assert a.snapshot("p", max_age=60).state is State.OPEN
    assert in_redis(admin, a) == "open"
    assert a.get("p").retry_at == pytest.approx(opened.retry_at)
    b.refresh()  # the key is back: b adopts it (same state), no second write
    assert b.get("p").state is State.OPEN
    fresh = RedisBreakerStore(url=server.url, key_prefix=a._prefix)  # a new worker
    assert not fresh.acquire("p", CFG).allowed


def test_a_wiped_redis_does_not_admit_a_call_to_an_open_breaker(admin, workers):
    """No outage noticed (FLUSHDB): the next call that asks Redis writes the state back."""
    a, b = workers
    open_in(a)
    b.get("p")
    admin.flushdb()
    for store in (a, b):  # both ask at once: the first writes, the second finds it
        admission = store.acquire("p", CFG)
        assert not admission.allowed and admission.state.state is State.OPEN
    assert in_redis(admin, a) == "open"


def test_breakers_opened_locally_during_the_outage_go_back_to_an_empty_redis(server, admin,
                                                                             workers):
    a, _ = workers
    server.stop()
    open_in(a, "q")  # Redis is down: the in-process fallback opens it
    assert not a.connected
    server.start()
    assert any(a.ping() for _ in range(20))
    a.refresh()
    assert in_redis(admin, a, "q") == "open"
    assert not a.acquire("q", CFG).allowed


def test_forced_open_and_disabled_survive_a_wipe(admin, workers):
    a, b = workers
    a.force("f", State.FORCED_OPEN)
    a.force("d", State.DISABLED)
    b.refresh()
    admin.flushdb()
    b.refresh()
    assert (in_redis(admin, a, "f"), in_redis(admin, a, "d")) == ("forced_open", "disabled")
    assert not a.acquire("f", CFG).allowed


def test_a_deliberate_clear_closes_everywhere_even_after_a_wipe(admin, workers):
    a, b = workers
    open_in(a)
    b.refresh()
    admin.flushdb()
    b.refresh()
    assert in_redis(admin, a) == "open"  # a wipe is undone...
    a.clear()  # ...a clear is not
    b.refresh()
    assert b.snapshot("p", max_age=60).state is State.CLOSED
    assert b.acquire("p", CFG).allowed and a.acquire("p", CFG).allowed
    assert in_redis(admin, a) in (None, "closed")


def test_an_admin_reset_closes_everywhere(admin, workers):
    a, b = workers
    open_in(a)
    b.refresh()
    admin.flushdb()
    b.force("p", State.CLOSED)  # the key is gone: the reset applies to b's open state
    assert in_redis(admin, a) == "closed"
    a.refresh()
    assert a.snapshot("p", max_age=60).state is State.CLOSED
    assert a.acquire("p", CFG).allowed


# -- the pure rules ----------------------------------------------------------------------

def test_only_shared_open_states_are_written_back():
    from flexiai_django.breakers.redis_codec import seed_of
    from flexiai_django.breakers.state import BreakerState

    assert seed_of(None) == seed_of(BreakerState()) == ""
    assert seed_of(BreakerState(state=State.OPEN, version=0)) == ""  # never shared
    assert seed_of(BreakerState(state=State.HALF_OPEN, version=4)) == ""
    for kept in (State.OPEN, State.FORCED_OPEN, State.DISABLED):
        assert f'"state":"{kept.value}"' in seed_of(BreakerState(state=kept, version=2))


def test_a_missing_breaker_was_lost_unless_a_clear_this_worker_has_not_seen_says_otherwise():
    from flexiai_django.breakers.redis_codec import lost_by_redis

    assert lost_by_redis("", "")  # never cleared, then wiped
    assert lost_by_redis("t1", "")  # cleared once (seen), then wiped
    assert lost_by_redis("t1", "t1")
    assert not lost_by_redis("t1", "t2") and not lost_by_redis("", "t2")  # a clear


def test_during_the_outage_the_in_process_fallback_keeps_what_the_worker_knew(server,
                                                                               workers):
    """Redis down: the fallback starts from the worker's open state, not from CLOSED."""
    a, b = workers
    open_in(a)
    b.force("f", State.FORCED_OPEN)
    server.stop()
    try:
        assert not a.acquire("p", CFG).allowed
        assert not b.acquire("f", CFG).allowed
        assert not a.connected and not b.connected
    finally:
        server.start()
