"""Routing and capacity through the chain: slots held while a provider works, freed when
it is done whatever ends it, full providers skipped, and each strategy's pick.

Real Redis (the suite's database, keys of this module's own prefix) and the fake upstream
on loopback.
"""

import asyncio
import dataclasses
import gc
import time

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import override_settings

import flexiai_django
from flexiai_django import chain, inflight, walk
from flexiai_django.breakers import get_store
from flexiai_django.chat_types import ChatRequest, Message
from flexiai_django.inflight_local import TierActivity

HELLO = [{"role": "user", "content": "hello"}]
PREFIX = "flexiai-test-routing"
ROUTED = {"MODEL_ALIASES": {"auto": None, "busy": None, "tiers": None},
          "ROUTING": {"busy": "least-busy", "tiers": "overflow"},
          "DEGRADED_MESSAGE": None, "CACHE_ENABLED": False,
          "BREAKER_STORE": {"BACKEND": "flexiai_django.breakers.redis_store.RedisBreakerStore",
                            "OPTIONS": {"key_prefix": PREFIX}}}


@pytest.fixture
def routed(make_provider):
    with override_settings(FLEXIAI={**settings.FLEXIAI, **ROUTED}):
        get_store().clear()
        inflight.get_slots().clear()
        yield make_provider
        get_store().clear()
        inflight.get_slots().clear()


def in_flight(name):
    return inflight.counts([name])[name]


def trail(result):
    return [(a.provider, a.outcome) for a in result.trail]


def wait_for(check, within=3.0):
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "not within the bound"
        time.sleep(0.02)


@pytest.mark.django_db
def test_a_provider_at_capacity_is_skipped_and_the_next_answers(routed):
    routed("primary", priority=1, capacity=1)
    routed("secondary", priority=2)
    held = inflight.get_slots().acquire("primary", 1)  # another request, elsewhere
    result = flexiai_django.chat(HELLO)
    assert result.provider == "secondary"
    assert trail(result) == [("primary", "skipped:at_capacity"), ("secondary", "ok")]
    inflight.get_slots().release(held)
    assert flexiai_django.chat(HELLO).provider == "primary"
    assert in_flight("primary") == 0  # its slot was freed with the answer


@pytest.mark.django_db
def test_every_provider_full_falls_through_to_the_degraded_tier(routed):
    routed("primary", capacity=1)
    inflight.get_slots().acquire("primary", 1)
    with override_settings(FLEXIAI={**settings.FLEXIAI, **ROUTED, "DEGRADED_MESSAGE": "busy"}):
        result = flexiai_django.chat(HELLO)
    assert (result.tier, result.content) == ("degraded", "busy")


@pytest.mark.django_db
def test_a_failed_attempt_frees_its_slot_before_the_next_provider(routed, fake_upstream):
    routed("primary", priority=1, capacity=1)
    routed("secondary", priority=2, capacity=1)
    fake_upstream.set_fault("primary", status=500)
    result = flexiai_django.chat(HELLO)
    assert result.provider == "secondary"
    assert inflight.counts(["primary", "secondary"]) == {"primary": 0, "secondary": 0}


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_the_slot_is_held_while_the_call_is_in_flight(routed, fake_upstream):
    await sync_to_async(routed)("capped", priority=1, capacity=3)
    fake_upstream.set_fault("capped", first_token_delay=0.6)
    call = asyncio.create_task(flexiai_django.achat(HELLO))
    deadline = time.monotonic() + 3
    while in_flight("capped") != 1:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert (await call).provider == "capped"
    wait_for(lambda: in_flight("capped") == 0)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_plain_priority_request_to_an_uncapped_provider_holds_no_slot(
        routed, fake_upstream):
    await sync_to_async(routed)("free", priority=1)
    fake_upstream.set_fault("free", first_token_delay=0.4)
    call = asyncio.create_task(flexiai_django.achat(HELLO))
    await asyncio.sleep(0.2)
    assert in_flight("free") == 0 and inflight.get_slots().held() == []
    assert (await call).provider == "free"


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_cancelled_call_frees_its_slot(routed, fake_upstream):
    await sync_to_async(routed)("capped", capacity=2)
    fake_upstream.set_fault("capped", first_token_delay=5.0)
    call = asyncio.create_task(flexiai_django.achat(HELLO))
    deadline = time.monotonic() + 3
    while in_flight("capped") != 1:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    wait_for(lambda: in_flight("capped") == 0)


@pytest.mark.django_db
def test_a_stream_holds_its_slot_until_it_ends(routed):
    routed("capped", capacity=1)
    stream = flexiai_django.stream(HELLO)
    assert in_flight("capped") == 1
    assert "".join(stream) == "capped: hello"
    assert in_flight("capped") == 0


@pytest.mark.django_db
def test_a_stream_dropped_unread_frees_its_slot(routed):
    routed("capped", capacity=1)
    stream = flexiai_django.stream(HELLO)
    assert in_flight("capped") == 1
    del stream
    gc.collect()
    wait_for(lambda: in_flight("capped") == 0)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_an_async_stream_abandoned_mid_way_frees_its_slot(routed, fake_upstream):
    await sync_to_async(routed)("capped", capacity=1)
    fake_upstream.set_fault("capped", chunk_delay=0.05)
    stream = await flexiai_django.astream(HELLO)
    pieces = stream.adeltas()
    await pieces.__anext__()
    assert in_flight("capped") == 1
    await pieces.aclose()
    deadline = time.monotonic() + 3
    while in_flight("capped") != 0:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


@pytest.mark.django_db
def test_least_busy_sends_the_request_to_the_provider_with_fewest_in_flight(routed):
    routed("a", priority=1)
    routed("b", priority=2)
    assert flexiai_django.chat(HELLO, model="busy").provider == "a"
    inflight.get_slots().acquire("a", None)
    assert flexiai_django.chat(HELLO, model="busy").provider == "b"


@pytest.mark.django_db
def test_overflow_fills_the_large_tier_then_the_small_one_and_counts_it(routed):
    routed("large", priority=2, tier="large", capacity=1)
    routed("small", priority=1, tier="small", capacity=4)
    assert flexiai_django.chat(HELLO, model="tiers").provider == "large"
    held = inflight.get_slots().acquire("large", 1)
    assert flexiai_django.chat(HELLO, model="tiers").provider == "small"
    inflight.get_slots().release(held)
    assert flexiai_django.chat(HELLO, model="tiers").provider == "large"
    activity = inflight.tier_activity(60)
    assert activity["large"] == TierActivity(2, 0)
    assert activity["small"] == TierActivity(1, 1)


@pytest.mark.django_db
def test_a_pinned_session_is_not_rerouted(routed):
    routed("large", priority=2, tier="large", capacity=4)
    routed("small", priority=1, tier="small", capacity=4)
    request = ChatRequest((Message("user", "hello"),), model="tiers", pinned="small")
    assert chain.complete(request).provider == "small"
    unpinned = dataclasses.replace(request, pinned=None)
    assert chain.complete(unpinned).provider == "large"


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_hedge_that_loses_frees_its_slot_and_the_winner_its_own(routed, fake_upstream):
    await sync_to_async(routed)("primary", priority=1, capacity=2, timeout=5.0)
    await sync_to_async(routed)("secondary", priority=2, capacity=2, timeout=5.0)
    fake_upstream.set_fault("primary", first_token_delay=2.0)
    hedged = {**settings.FLEXIAI, **ROUTED, "HEDGED_ALIASES": ["auto"],
              "HEDGE_DEFAULT_DELAY_SECONDS": 0.2, "HEDGE_BUDGET": 0.5}
    with override_settings(FLEXIAI=hedged):
        result = await flexiai_django.achat(HELLO, model="auto")
        assert result.provider == "secondary"
        deadline = time.monotonic() + 3
        while inflight.counts(["primary", "secondary"]) != {"primary": 0, "secondary": 0}:
            assert time.monotonic() < deadline, "slots not freed"
            await asyncio.sleep(0.02)


def test_a_session_pinned_to_a_full_provider_stays_pinned():
    from flexiai_django import sessions
    from flexiai_django.chat_types import Attempt

    trail = [Attempt("large", walk.AT_CAPACITY), Attempt("small", "ok")]
    assert sessions.moved_to("large", "small", trail) is None
    assert sessions.moved_to("large", "small", [Attempt("large", "server_error"),
                                                Attempt("small", "ok")]) == "small"
