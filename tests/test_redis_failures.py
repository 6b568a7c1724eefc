"""Every kind of Redis failure degrades like a lost connection, never a 500.

A real ``redis-server`` of the test's own is made to refuse writes the two ways
production meets: out of memory (``maxmemory`` with ``noeviction``) and a read-only
replica (``REPLICAOF`` a master that is not there). Such a server still answers PING
and reads, which is what made it dangerous: the errors are ``ResponseError``\\ s, not
connection errors. The breaker store, the rate limiter and the answer cache must each
fall back, say they are not connected, log the outage once (the error's type, never
its text), and go back to Redis, logging that once, when it takes writes again.
"""

import logging
import uuid

import pytest
import redis as redis_lib
from django.test import override_settings

from flexiai_django import cache_tier
from flexiai_django.breakers.redis_store import RedisBreakerStore
from flexiai_django.breakers.state import BreakerConfig, State
from flexiai_django.chat_types import ChatRequest, Completion
from flexiai_django.ratelimit import (
    RateDecision,
    RateLimiter,
    fallback_share,
    workers_heard,
)
from flexiai_django.testing.clock import FakeClock
from flexiai_django.testing.redis_server import (
    RedisServer,
    end_oom,
    end_readonly,
    start_oom,
    start_readonly,
)
from flexiai_django.worker import worker_id

CFG = BreakerConfig(failure_threshold=3, success_threshold=1, open_seconds=10, jitter=0.0)
DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


# fault name: (break it, mend it, the error type the log names, words of the server's text)
FAULTS = {
    "oom": (start_oom, end_oom, "OutOfMemoryError", "maxmemory"),
    "readonly": (start_readonly, end_readonly, "ReadOnlyError", "read only"),
}


@pytest.fixture(scope="module")
def server():
    with RedisServer() as own:
        yield own


@pytest.fixture
def admin(server):
    client = redis_lib.Redis.from_url(server.url)
    yield client
    end_oom(client)
    end_readonly(client)
    client.close()


@pytest.fixture(params=sorted(FAULTS))
def fault(request, admin):
    start, end, kind, text = FAULTS[request.param]
    return (lambda: start(admin)), (lambda: end(admin)), kind, text


def warnings_of(caplog, words):
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and words in r.getMessage()]


# -- the breaker store -----------------------------------------------------------------------

def test_the_breaker_store_falls_back_on_a_server_refusing_writes_and_comes_back(
        server, fault, caplog):
    start, end, kind, text = fault
    # retry_seconds=0: every call tries Redis again, so "logged once" is not thanks to a back-off
    store = RedisBreakerStore(url=server.url, retry_seconds=0.0, rand=lambda: 0.5,
                              key_prefix=f"f{uuid.uuid4().hex[:8]}")
    store.record("b", CFG, success=False, probe=False, error="timeout")
    assert store.get("b").failures == 1 and store.connected

    start()
    with caplog.at_level(logging.WARNING, logger="flexiai_django"):
        states = [store.record("b", CFG, success=False, probe=False, error="timeout")
                  for _ in range(3)]
        assert [s.state for s in states] == [State.CLOSED, State.CLOSED, State.OPEN]  # local
        assert not store.acquire("b", CFG).allowed
        assert store.force("other", State.FORCED_OPEN).state is State.FORCED_OPEN
        # Reads still work on such a server; they must not end the outage.
        assert store.get("b").state is State.OPEN
        assert store.all()["b"].state is State.OPEN
        assert not store.ping()
        assert store.describe()["connected"] is False and not store.connected
    lost = warnings_of(caplog, "breaker store lost Redis")
    assert lost == [f"breaker store lost Redis ({kind}); using in-process breakers"]
    assert text not in caplog.text and server.url not in caplog.text

    caplog.clear()
    end()
    with caplog.at_level(logging.WARNING, logger="flexiai_django"):
        shared = store.get("b")  # the shared state again: one failure, from before
        assert (shared.state, shared.failures) == (State.CLOSED, 1)
        assert store.connected and store.describe()["connected"] is True
        store.record("b", CFG, success=False, probe=False)
        store.record("b", CFG, success=False, probe=False)
    assert len(warnings_of(caplog, "breaker store reconnected")) == 1
    assert not warnings_of(caplog, "lost Redis")
    other = RedisBreakerStore(url=server.url, key_prefix=store._prefix)
    assert other.get("b").state is State.OPEN, "counted in Redis again"


def test_the_breaker_script_reloads_after_a_script_flush_without_an_outage(server, caplog):
    """redis-py's Script answers NOSCRIPT by loading the script again: not an outage."""
    store = RedisBreakerStore(url=server.url, retry_seconds=60.0,
                              key_prefix=f"f{uuid.uuid4().hex[:8]}", snapshot_ttl=0)
    store.record("b", CFG, success=False, probe=False)
    redis_lib.Redis.from_url(server.url).script_flush()
    with caplog.at_level(logging.WARNING, logger="flexiai_django"):
        assert store.record("b", CFG, success=False, probe=False).failures == 2
    assert store.connected and not caplog.records


ERRORS = [redis_lib.exceptions.OutOfMemoryError("OOM command not allowed"),
          redis_lib.exceptions.ReadOnlyError("READONLY You can't write against a replica"),
          redis_lib.BusyLoadingError("LOADING Redis is loading the dataset in memory"),
          redis_lib.AuthenticationError("invalid username-password pair"),
          redis_lib.exceptions.NoPermissionError("NOPERM this user has no permissions"),
          redis_lib.ResponseError("ERR Error running script"),
          redis_lib.exceptions.ClusterDownError("CLUSTERDOWN The cluster is down")]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_any_redis_error_on_any_store_path_falls_back(error, monkeypatch, caplog):
    store = RedisBreakerStore(url=DEAD_REDIS, retry_seconds=0.0)

    def refuse(*args, **kwargs):
        raise error

    class Refusing:  # a pipeline whose every call fails
        def __getattr__(self, name):
            return refuse

    client = store._redis()  # this store's client only: other stores stay as they are
    monkeypatch.setattr(client, "execute_command", refuse)
    monkeypatch.setattr(client, "pipeline", lambda *args, **kwargs: Refusing())
    with caplog.at_level(logging.WARNING, logger="flexiai_django"):
        assert store.acquire("b", CFG).allowed
        assert store.record("b", CFG, success=False, probe=False).failures == 1
        assert store.force("b", State.DISABLED).state is State.DISABLED
        assert store.get("b").state is State.DISABLED
        assert "b" in store.all()
        store.refresh()
        assert not store.ping()
        with pytest.raises(type(error)):  # forgetting the shared state must not pass silently
            store.clear()
    assert store.describe()["connected"] is False
    assert warnings_of(caplog, "lost Redis") == [
        f"breaker store lost Redis ({type(error).__name__}); using in-process breakers"]
    assert str(error) not in caplog.text


# -- the rate limiter ------------------------------------------------------------------------

def test_the_limiter_keeps_counting_in_redis_when_it_is_out_of_memory(server, admin, caplog):
    """Redis lets a script that has already run a write command (the limiter's
    ZREMRANGEBYSCORE) go on writing over ``maxmemory``: the shared count stays exact."""
    clock = FakeClock()
    limiter = RateLimiter(url=server.url, key_prefix=f"f{uuid.uuid4().hex[:8]}", clock=clock)
    assert limiter.hit("client", 3).remaining == 2
    start_oom(admin)
    with pytest.raises(redis_lib.exceptions.OutOfMemoryError):
        admin.set("anything", 1)  # the server does refuse plain writes
    with caplog.at_level(logging.WARNING, logger="flexiai_django"):
        assert [limiter.hit("client", 3).remaining for _ in range(2)] == [1, 0]
        assert not limiter.hit("client", 3).allowed
    assert limiter.connected and not caplog.records


@override_settings(FLEXIAI={"RATE_LIMIT_FALLBACK": "share", "RATE_LIMIT_FALLBACK_WORKERS": 2})
def test_the_limiter_counts_its_share_on_a_read_only_replica_and_comes_back(
        server, admin, caplog):
    clock = FakeClock()
    limiter = RateLimiter(url=server.url, key_prefix=f"f{uuid.uuid4().hex[:8]}", clock=clock,
                          retry_seconds=5)
    assert limiter.hit("client-7f3a", 4) == RateDecision(True, 4, 3, 0.0)

    start_readonly(admin)
    with caplog.at_level(logging.WARNING, logger="flexiai_django"):
        decisions = [limiter.hit("client-7f3a", 4) for _ in range(3)]
        assert decisions == [RateDecision(True, 2, 1, 0.0), RateDecision(True, 2, 0, 0.0),
                             RateDecision(False, 2, 0, 60.0)]  # half of 4, in this process
        assert not limiter.connected and limiter.describe()["connected"] is False
        clock.advance(5)  # the retry is due: the probe write is refused again
        assert not limiter.hit("client-7f3a", 4).allowed
        assert not limiter.connected
    assert warnings_of(caplog, "lost Redis") == [
        "rate limiter lost Redis (ReadOnlyError); counting in this process"]
    assert "read only" not in caplog.text and "client-7f3a" not in caplog.text

    caplog.clear()
    end_readonly(admin)
    clock.advance(5)
    with caplog.at_level(logging.WARNING, logger="flexiai_django"):
        assert limiter.hit("client-7f3a", 4) == RateDecision(True, 4, 2, 0.0)  # Redis again
        assert limiter.hit("client-7f3a", 4) == RateDecision(True, 4, 1, 0.0)
    assert limiter.connected
    assert len(warnings_of(caplog, "rate limiter reconnected")) == 1
    assert redis_lib.Redis.from_url(server.url).zcard(limiter.key_name("client-7f3a")) == 3


@override_settings(FLEXIAI={"RATE_LIMIT_FALLBACK": "share", "RATE_LIMIT_FALLBACK_WORKERS": 4})
def test_share_mode_admits_a_quarter_of_the_limit_per_minute_with_four_workers():
    clock = FakeClock()
    limiter = RateLimiter(url=DEAD_REDIS, clock=clock, retry_seconds=5)
    for minute in range(3):
        decisions = [limiter.hit("client", 8) for _ in range(10)]
        assert [d.allowed for d in decisions] == [True, True] + [False] * 8, minute
        assert decisions[2] == RateDecision(False, 2, 0, 60.0)
        assert not any(d.unavailable for d in decisions)
        clock.advance(60)
    assert not limiter.connected


@override_settings(FLEXIAI={"RATE_LIMIT_FALLBACK": "refuse"})
def test_refuse_mode_refuses_as_unavailable_until_redis_answers(caplog):
    clock = FakeClock()
    limiter = RateLimiter(url=DEAD_REDIS, clock=clock, retry_seconds=5)
    with caplog.at_level(logging.WARNING, logger="flexiai_django"):
        first = limiter.hit("client", 8)
        assert first == RateDecision(False, 8, 0, 5.0, unavailable=True)
        clock.advance(2)
        assert limiter.hit("client", 8) == RateDecision(False, 8, 0, 3.0, unavailable=True)
        assert limiter.hit("client", 0) == RateDecision(True, 0, 0, 0.0)  # unlimited stays so
    assert len(warnings_of(caplog, "lost Redis")) == 1


@override_settings(FLEXIAI={"RATE_LIMIT_FALLBACK": "share", "RATE_LIMIT_FALLBACK_WORKERS": None})
def test_share_mode_counts_the_workers_heard_before_the_outage_and_keeps_that_count(
        monkeypatch):
    import time

    from flexiai_django import broadcast

    class Heard:
        worker_stats = {
            "host:101": {"worker": "host:101", "sent_at": time.time() - 5},
            "host:102": {"worker": "host:102", "sent_at": time.time() - 50},
            "host:103": {"worker": "host:103", "sent_at": time.time() - 1},
            "host:99": {"worker": "host:99", "sent_at": time.time() - 3600},  # long gone
            "host:98": {"worker": "host:98", "sent_at": "soon"},  # malformed: skipped
            worker_id(): {"worker": worker_id(), "sent_at": time.time()},  # this process
        }

    monkeypatch.setattr(broadcast, "running_listener", lambda: Heard)
    clock = FakeClock()
    limiter = RateLimiter(url=DEAD_REDIS, clock=clock, retry_seconds=5)
    assert [limiter.hit("client", 8).allowed for _ in range(3)] == [True, True, False]
    Heard.worker_stats = {}  # the broadcast rides on the same Redis: it has gone quiet
    clock.advance(60)
    assert [limiter.hit("client", 8).allowed for _ in range(3)] == [True, True, False]

    monkeypatch.setattr(broadcast, "running_listener", lambda: None)
    alone = RateLimiter(url=DEAD_REDIS, clock=clock, retry_seconds=5)
    assert sum(alone.hit("client", 8).allowed for _ in range(10)) == 8


def test_the_share_rule():
    assert [fallback_share(8, w) for w in (1, 2, 3, 4, 8, 9, 100)] == [8, 4, 3, 2, 1, 1, 1]
    assert fallback_share(8, 0) == 8 and fallback_share(1, 4) == 1
    heard = {"a": 100.0, "b": 50.0, "me": 10.0}
    assert workers_heard(heard, "me", now=100.0, within=60.0) == 3  # "me" counts, however old
    assert workers_heard(heard, "c", now=100.0, within=60.0) == 3
    assert workers_heard({}, "me", now=0.0, within=60.0) == 1


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_any_redis_error_in_the_limiter_falls_back(error, monkeypatch, caplog):
    def refuse(*args, **kwargs):
        raise error

    limiter = RateLimiter(url=DEAD_REDIS, clock=FakeClock(), retry_seconds=0)
    monkeypatch.setattr(limiter._redis_client(), "execute_command", refuse)
    with override_settings(FLEXIAI={"RATE_LIMIT_FALLBACK_WORKERS": 1}), \
            caplog.at_level(logging.WARNING, logger="flexiai_django"):
        assert [limiter.hit("client", 2).allowed for _ in range(3)] == [True, True, False]
    assert not limiter.connected
    assert len(warnings_of(caplog, "lost Redis")) == 1 and str(error) not in caplog.text


def test_the_limiter_script_reloads_after_a_script_flush_without_an_outage(server, caplog):
    limiter = RateLimiter(url=server.url, key_prefix=f"f{uuid.uuid4().hex[:8]}")
    assert limiter.hit("client", 3).remaining == 2
    redis_lib.Redis.from_url(server.url).script_flush()
    with caplog.at_level(logging.WARNING, logger="flexiai_django"):
        assert limiter.hit("client", 3).remaining == 1
    assert limiter.connected and not caplog.records


# -- the answer cache ------------------------------------------------------------------------

@pytest.fixture
def answer_cache(server, monkeypatch):
    """The answer cache on the test's own server (never the shared one), retrying every call."""
    caches = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "answers": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": server.url,
                    "OPTIONS": {"SOCKET_TIMEOUT": 0.5, "SOCKET_CONNECT_TIMEOUT": 0.5}},
    }
    monkeypatch.setattr(cache_tier, "RETRY_SECONDS", 0.0)
    with override_settings(CACHES=caches,
                           FLEXIAI={"CACHE_ENABLED": True, "CACHE_ALIAS": "answers"}):
        cache_tier.forget_outage()
        yield
    cache_tier.forget_outage()


def ask(i):
    return ChatRequest.build(f"question {i} {uuid.uuid4().hex}")


@pytest.mark.django_db
def test_the_answer_cache_misses_quietly_on_a_server_refusing_writes_and_comes_back(
        answer_cache, fault, caplog):
    start, end, kind, text = fault
    before = ask(0)
    cache_tier.remember(before, "primary", Completion("kept", "m"))
    assert cache_tier.recall(before)["content"] == "kept" and cache_tier.connected()

    start()
    with caplog.at_level(logging.WARNING, logger="flexiai_django"):
        for i in range(5):
            cache_tier.remember(ask(i), "primary", Completion("lost", "m"))
            cache_tier._write_many({"k": {"content": "x"}})
            assert cache_tier.recall(before) is None  # treated like a lost connection: a miss
        assert not cache_tier.connected()
    failing = warnings_of(caplog, "answer cache failing")
    # django-redis lets a redis error through on SET (OOM, READONLY) and wraps those of
    # other calls in ConnectionInterrupted: either way one line, naming the first.
    assert failing == [f"answer cache failing ({kind}); serving without it"]
    assert text not in caplog.text

    caplog.clear()
    end()
    after = ask(1)
    with caplog.at_level(logging.WARNING, logger="flexiai_django"):
        cache_tier.remember(after, "primary", Completion("fresh", "m"))
        assert cache_tier.recall(after)["content"] == "fresh"
        assert cache_tier.recall(before)["content"] == "kept"
    assert cache_tier.connected()
    assert warnings_of(caplog, "answer cache") == ["answer cache working again"]


# -- what /health reads ----------------------------------------------------------------------

@pytest.mark.django_db
def test_shared_state_status_names_each_part_that_lost_redis():
    from django.conf import settings

    from flexiai_django.breakers import get_store
    from flexiai_django.ratelimit import get_limiter
    from flexiai_django.shared_state import shared_state_status

    # Fresh store and limiter on the test settings, dropped again on exit.
    with override_settings(FLEXIAI=dict(settings.FLEXIAI)):
        assert get_store().describe()["shared"] and get_limiter().describe()["shared"]
        assert shared_state_status() == {"breaker_store": True, "rate_limiter": True,
                                         "answer_cache": True}
        get_limiter()._failed(redis_lib.exceptions.ReadOnlyError())
        assert shared_state_status() == {"breaker_store": True, "rate_limiter": False,
                                         "answer_cache": True}
        cache_tier._outage.failed(redis_lib.exceptions.OutOfMemoryError())
        get_store()._failed(redis_lib.exceptions.OutOfMemoryError())
        assert shared_state_status() == {"breaker_store": False, "rate_limiter": False,
                                         "answer_cache": False}
    assert cache_tier.connected(), "a settings change starts the cache tier afresh"
    with override_settings(FLEXIAI={}):  # no Redis configured: nothing to lose
        assert shared_state_status() == {"breaker_store": True, "rate_limiter": True,
                                         "answer_cache": True}


# -- the end of an outage, with many threads ---------------------------------------------------

def test_threads_arriving_together_after_an_outage_run_one_probe_and_reset_once(
        server, admin, caplog):
    """While the probe write is held up (``CLIENT PAUSE ... WRITE``), the other threads
    go on with in-process breakers instead of each probing: one SET, one reset, one line."""
    import threading

    resets = []

    class Counted(RedisBreakerStore):
        def _succeeded(self):
            before = self._outage.connected
            super()._succeeded()
            if not before and self._outage.connected:
                resets.append(threading.get_ident())

    store = Counted(url=server.url, retry_seconds=0.0, key_prefix=f"f{uuid.uuid4().hex[:8]}")
    store.record("b", CFG, success=False, probe=False)
    start_oom(admin)
    store.record("b", CFG, success=False, probe=False)
    assert not store.connected
    end_oom(admin)

    def sets():
        return admin.info("commandstats").get("cmdstat_set", {}).get("calls", 0)

    before = sets()
    barrier = threading.Barrier(16)

    def arrive():
        barrier.wait()
        store.get("b")

    threads = [threading.Thread(target=arrive) for _ in range(16)]
    admin.execute_command("CLIENT", "PAUSE", 100, "WRITE")
    with caplog.at_level(logging.WARNING, logger="flexiai_django"):
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
    assert store.connected
    assert sets() - before == 1, "one probe write, not one per thread"
    assert len(resets) == 1
    assert len(warnings_of(caplog, "breaker store reconnected")) == 1


def test_the_probe_claim_and_the_end_of_an_outage_hold_under_threads(caplog):
    import threading

    from flexiai_django.redis_outage import RedisOutage

    outage = RedisOutage("lost (%s)", "back", 0.0)
    outage.failed(redis_lib.ConnectionError())
    barrier = threading.Barrier(32)
    claims, ends = [], []

    def race():
        barrier.wait()
        if outage.claim_probe():
            claims.append(1)
        if outage.succeeded():
            ends.append(1)

    threads = [threading.Thread(target=race) for _ in range(32)]
    with caplog.at_level(logging.WARNING, logger="flexiai_django"):
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(claims) == 1 and len(ends) == 1 and outage.connected
    assert [r.getMessage() for r in caplog.records].count("back") == 1
    assert not outage.claim_probe(), "nothing to probe while connected"
