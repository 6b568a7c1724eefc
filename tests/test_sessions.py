"""Sessions' pure rules (ordering, when to move) and both stores' behaviour."""

from dataclasses import dataclass

import pytest
import redis

from flexiai_django import sessions
from flexiai_django.chat_types import Attempt
from flexiai_django.session_store import MemorySessions, RedisSessions
from flexiai_django.testing.clock import FakeClock


@dataclass(frozen=True)
class P:
    name: str


ABC = [P("a"), P("b"), P("c")]


def names(ps):
    return [p.name for p in ps]


# -- ordering ---------------------------------------------------------------------------


def test_the_pinned_provider_goes_first_and_the_rest_keep_their_order():
    assert names(sessions.pin_first(ABC, "c")) == ["c", "a", "b"]
    assert names(sessions.pin_first(ABC, "b")) == ["b", "a", "c"]


def test_no_pin_or_a_pin_outside_the_candidates_changes_nothing():
    assert names(sessions.pin_first(ABC, None)) == ["a", "b", "c"]
    assert names(sessions.pin_first(ABC, "z")) == ["a", "b", "c"]


# -- when a session moves -----------------------------------------------------------------


def test_stays_when_the_pinned_provider_answered():
    assert sessions.moved_to("a", "a", [Attempt("a", "ok")]) is None


def test_moves_when_the_pinned_provider_failed_or_its_breaker_refused():
    assert sessions.moved_to("a", "b", [Attempt("a", "server_error"), Attempt("b", "ok")]) == "b"
    assert sessions.moved_to("a", "b", [Attempt("a", "skipped:open"), Attempt("b", "ok")]) == "b"


def test_stays_when_the_request_only_did_not_fit_the_pinned_provider():
    assert sessions.moved_to("a", "b", [Attempt("a", "too_long"), Attempt("b", "ok")]) is None
    assert sessions.moved_to("a", "b", [Attempt("a", "unsupported"), Attempt("b", "ok")]) is None


def test_stays_when_a_hedge_only_outran_the_pinned_provider():
    assert sessions.moved_to("a", "b", [Attempt("b", "ok"), Attempt("a", "cancelled")]) is None


def test_stays_when_the_pin_was_not_tried_or_a_fallback_tier_answered():
    assert sessions.moved_to("a", "b", [Attempt("b", "ok")]) is None
    assert sessions.moved_to("a", None, [Attempt("a", "server_error")]) is None


def test_a_session_without_a_pin_is_pinned_to_whoever_answered():
    assert sessions.moved_to(None, "b", [Attempt("b", "ok")]) == "b"


def test_ids_are_short_and_url_safe():
    assert sessions.valid_id("conv-42_A")
    assert sessions.valid_id(sessions.new_id())
    for bad in ("", "a/b", "a b", "é", "x" * 65, None, 42):
        assert not sessions.valid_id(bad)


# -- the stores -------------------------------------------------------------------------


def test_memory_sessions_expire_after_the_ttl_and_each_use_refreshes_it(settings):
    settings.FLEXIAI = {"SESSION_TTL_SECONDS": 10}
    clock = FakeClock()
    store = MemorySessions(clock=clock)
    session, made = store.create("me", "s1", "auto", "a")
    assert made and session.expires_at == clock.now + 10
    clock.advance(9)
    assert store.get("me", "s1").provider == "a"  # refreshed: 10 s more from now
    clock.advance(9)
    assert store.get("me", "s1") is not None
    clock.advance(10)
    assert store.get("me", "s1") is None


def test_memory_sessions_are_bounded():
    clock = FakeClock()
    store = MemorySessions(clock=clock, limit=3)
    for i in range(5):
        clock.advance(1)
        store.create("me", f"s{i}", "auto", "a")
    assert [store.get("me", f"s{i}") is not None for i in range(5)] == [False, False, True,
                                                                         True, True]


@pytest.fixture(params=["memory", "redis"])
def store(request, settings):
    settings.FLEXIAI = {"SESSION_TTL_SECONDS": 30}
    if request.param == "memory":
        yield MemorySessions()
        return
    from django.conf import settings as django_settings

    store = RedisSessions(url=django_settings.REDIS_URL or "redis://127.0.0.1:6379/15",
                          key_prefix="flexiai-test")
    store.clear()
    yield store
    store.clear()


def test_create_is_idempotent_per_owner_and_owners_are_apart(store):
    _, made = store.create("key:1", "s", "auto", "a")
    again, made_again = store.create("key:1", "s", "other", "b")
    assert made and not made_again
    assert (again.provider, again.model) == ("a", "auto")
    assert store.get("key:2", "s") is None
    assert not store.delete("key:2", "s")
    assert store.get("key:1", "s") is not None


def test_move_is_a_compare_and_set(store):
    store.create("me", "s", "auto", "a")
    assert store.move("me", "s", "a", "b").provider == "b"
    # A second worker that also saw "a" fail moves nothing: the session stays on "b".
    assert store.move("me", "s", "a", "c").provider == "b"
    assert store.get("me", "s").provider == "b"
    assert store.move("me", "nope", "a", "b") is None


def test_a_session_without_a_pin_takes_its_first(store):
    store.create("me", "s", "auto", None)
    assert store.move("me", "s", None, "b").provider == "b"
    assert store.move("me", "s", None, "c").provider == "b"


def test_delete_ends_a_session(store):
    store.create("me", "s", "auto", "a")
    assert store.delete("me", "s")
    assert store.get("me", "s") is None
    assert not store.delete("me", "s")


def test_redis_sessions_carry_the_ttl_and_each_use_refreshes_it(settings):
    from django.conf import settings as django_settings

    url = django_settings.REDIS_URL or "redis://127.0.0.1:6379/15"
    store = RedisSessions(url=url, key_prefix="flexiai-test")
    client = redis.Redis.from_url(url)
    settings.FLEXIAI = {"SESSION_TTL_SECONDS": 30}
    store.create("me", "s", "auto", "a")
    key = store.key_name("me", "s")
    assert 25_000 < client.pttl(key) <= 30_000
    settings.FLEXIAI = {"SESSION_TTL_SECONDS": 300}
    store.get("me", "s")
    assert 250_000 < client.pttl(key) <= 300_000
    store.clear()
