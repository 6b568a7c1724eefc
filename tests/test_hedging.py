"""Hedged requests: a late first token starts the next provider too; the first to answer wins.

The delay choice and the budget rule are pure (samples and clocks injected); the race runs
against the fake upstream on loopback, with the budget in the test Redis.
"""

import asyncio
import json
import time

import pytest
from django.conf import settings
from django.test import override_settings
from prometheus_client import REGISTRY

import flexiai_django
from flexiai_django import hedge_budget, hedging
from flexiai_django.breakers import get_store
from flexiai_django.breakers.state import State
from flexiai_django.conf import get_settings
from flexiai_django.hedge_budget import BURST, HedgeBudget, LocalWindow, allows, get_budget
from flexiai_django.testing.clock import FakeClock

HELLO = [{"role": "user", "content": "hello"}]

# -- the delay: p95 of recent times to first token ---------------------------------------------


def test_the_default_delay_holds_until_there_are_enough_samples():
    few = [0.1] * (hedging.MIN_SAMPLES - 1)
    assert hedging.hedge_delay(few, default=1.0) == 1.0
    assert hedging.hedge_delay([0.1] * hedging.MIN_SAMPLES, default=1.0) == 0.1


def test_the_delay_is_the_p95_of_the_samples():
    samples = [i / 100 for i in range(1, 101)]  # 0.01 … 1.00
    assert hedging.hedge_delay(samples, default=5.0) == 0.95
    slow_tail = [0.2] * 95 + [3.0] * 5
    assert hedging.hedge_delay(slow_tail, default=5.0) == 0.2
    assert hedging.hedge_delay([0.2] * 94 + [3.0] * 6, default=5.0) == 3.0


def test_the_delay_never_goes_under_the_floor():
    assert hedging.hedge_delay([0.001] * 50, default=1.0) == hedging.FLOOR_SECONDS
    assert hedging.hedge_delay([], default=0.001) == hedging.FLOOR_SECONDS


@pytest.mark.django_db
def test_the_delay_reads_this_workers_figures_per_mode(make_provider):
    from flexiai_django import recent_calls
    from flexiai_django.provider_cache import get_providers

    make_provider("primary")
    (primary,) = get_providers()
    for _ in range(hedging.MIN_SAMPLES):
        recent_calls.local().first_token("primary", 0.3, streamed=True)
    with override_settings(FLEXIAI={"HEDGE_DEFAULT_DELAY_SECONDS": 2.0}):
        assert hedging.delay_for(primary, streamed=True) == 0.3
        assert hedging.delay_for(primary, streamed=False) == 2.0



def test_a_delay_is_worked_out_again_once_enough_new_times_came_in():
    n, every = hedging.MIN_SAMPLES, hedging.RECOMPUTE_EVERY
    assert hedging.still_holds((1.0, 0, n), (1.0, 0, n + every - 1))
    assert not hedging.still_holds((1.0, 0, n), (1.0, 0, n + every))
    # While the times are too few, every new one counts (the default gives way at once).
    assert not hedging.still_holds((1.0, 0, n - 1), (1.0, 0, n))
    assert hedging.still_holds((1.0, 0, 3), (1.0, 0, 3))
    # Another default, or cleared figures (a new epoch, or fewer times), never hold.
    assert not hedging.still_holds((1.0, 0, n), (2.0, 0, n))
    assert not hedging.still_holds((1.0, 0, n), (1.0, 1, n))
    assert not hedging.still_holds((1.0, 0, n), (1.0, 0, n - 1))


@pytest.mark.django_db
def test_a_slower_provider_gets_a_longer_delay_within_a_few_requests(make_provider):
    from flexiai_django import recent_calls
    from flexiai_django.provider_cache import get_providers

    make_provider("primary")
    (primary,) = get_providers()
    stats = recent_calls.local()
    for _ in range(hedging.MIN_SAMPLES):
        stats.first_token("primary", 0.1, streamed=False)
    assert hedging.delay_for(primary, streamed=False) == 0.1
    for _ in range(hedging.RECOMPUTE_EVERY - 1):
        stats.first_token("primary", 5.0, streamed=False)
    assert hedging.delay_for(primary, streamed=False) == 0.1  # kept: a few new times
    stats.first_token("primary", 5.0, streamed=False)
    assert hedging.delay_for(primary, streamed=False) == 5.0  # p95 of 20 × 0.1, 8 × 5.0
    stats.clear()
    assert hedging.delay_for(primary, streamed=False) == max(
        hedging.FLOOR_SECONDS, get_settings().HEDGE_DEFAULT_DELAY_SECONDS)


# -- the budget: hedges < budget × requests + burst, over two minutes ----------------------------


def test_the_rule():
    assert allows(requests=0, hedges=BURST - 1, budget=0.1)
    assert not allows(requests=0, hedges=BURST, budget=0.1)
    assert allows(requests=100, hedges=BURST + 9, budget=0.1)
    assert not allows(requests=100, hedges=BURST + 10, budget=0.1)
    assert not allows(requests=1000, hedges=0, budget=0.0)  # 0: hedging off


def local_budget(clock):
    return HedgeBudget(shared=False, clock=clock)


def redis_budget(clock):
    return HedgeBudget(url=settings.REDIS_URL, key_prefix="flexiai-test-hedge", clock=clock)


@pytest.fixture(params=[local_budget, redis_budget], ids=["local", "redis"])
def budget(request):
    """The same scenarios on the in-process window and the Lua script."""
    clock = FakeClock(start=6_000_000.0)  # a minute boundary
    budget = request.param(clock)
    budget.clear()
    yield budget, clock
    budget.clear()


def spend(budget, requests):
    """Count ``requests`` and take hedges until refused; how many were allowed."""
    for _ in range(requests):
        budget.count()
    allowed = 0
    while budget.allow():
        allowed += 1
        assert allowed < 1000
    return allowed


@override_settings(FLEXIAI={"HEDGE_BUDGET": 0.1})
def test_hedges_are_a_share_of_requests_plus_a_burst(budget):
    budget, clock = budget
    assert spend(budget, 0) == BURST
    assert spend(budget, 100) == 10  # 100 more requests: 10 more hedges, no second burst
    clock.advance(60)  # the previous minute still counts
    assert spend(budget, 0) == 0
    clock.advance(60)  # two minutes on: the old counts are gone
    assert spend(budget, 0) == BURST


@override_settings(FLEXIAI={"HEDGE_BUDGET": 0.0})
def test_a_budget_of_zero_allows_no_hedge(budget):
    budget, _ = budget
    assert spend(budget, 100) == 0


@override_settings(FLEXIAI={"HEDGE_BUDGET": 0.5})
def test_the_redis_budget_is_one_for_every_process():
    clock = FakeClock(start=6_000_000.0)
    one, other = redis_budget(clock), redis_budget(clock)
    one.clear()
    try:
        assert spend(one, 10) == 5 + BURST
        assert spend(other, 0) == 0  # the other worker sees the hedges the first one took
        assert spend(other, 4) == 2
    finally:
        one.clear()


def test_requests_reach_redis_in_batches():
    budget = redis_budget(FakeClock())
    budget.clear()
    try:
        due = [budget.count() for _ in range(hedge_budget.SHIP_EVERY)]
        assert due == [False] * (hedge_budget.SHIP_EVERY - 1) + [True]
    finally:
        budget.clear()


@override_settings(FLEXIAI={"HEDGE_BUDGET": 0.1})
def test_without_redis_each_process_rations_its_own_hedges(caplog):
    clock = FakeClock(start=6_000_000.0)
    budget = HedgeBudget(url="redis://127.0.0.1:1/0", clock=clock)  # nothing listens there
    assert spend(budget, 20) == 2 + BURST
    assert "hedge budget lost Redis (ConnectionError)" in caplog.text


def test_the_local_window_is_the_scripts_rule():
    window = LocalWindow()
    assert [window.decide(0, True, 0.1, 0.0) for _ in range(BURST + 1)] == [True] * BURST + [
        False]
    assert window.decide(10, True, 0.1, 1.0)


# -- the race, against the fake upstream ----------------------------------------------------------

HEDGED = {"HEDGED_ALIASES": ["auto"], "HEDGE_DEFAULT_DELAY_SECONDS": 0.2, "HEDGE_BUDGET": 0.1,
          "MODEL_ALIASES": {"auto": None, "steady": None}, "DEGRADED_MESSAGE": None,
          "CACHE_ENABLED": False}


def hedges(provider, outcome):
    value = REGISTRY.get_sample_value("flexiai_hedges_total",
                                      {"provider": provider, "outcome": outcome})
    return value or 0.0


class Hedges:
    """flexiai_hedges_total for one provider, relative to when this object was made."""

    OUTCOMES = ("started", "won", "lost", "refused_budget")

    def __init__(self, provider):
        self.provider = provider
        self.start = {o: hedges(provider, o) for o in self.OUTCOMES}

    def delta(self):
        return {o: hedges(self.provider, o) - self.start[o] for o in self.OUTCOMES
                if hedges(self.provider, o) != self.start[o]}


#: The suite's Redis under keys of this module's own, so no other test run sharing the
#: database clears them mid-test.
PREFIX = "flexiai-test-hedging"


def redis_store(**options):
    return {"BACKEND": "flexiai_django.breakers.redis_store.RedisBreakerStore",
            "OPTIONS": {"key_prefix": PREFIX, **options}}


@pytest.fixture
def two(make_provider):
    flexiai = {**settings.FLEXIAI, **HEDGED, "BREAKER_STORE": redis_store()}
    with override_settings(FLEXIAI=flexiai):
        get_store().clear()
        get_budget().clear()
        make_provider("primary", priority=1, timeout=5.0)
        make_provider("secondary", priority=2, timeout=5.0)
        yield
        get_store().clear()
        get_budget().clear()


async def eventually(check, within=3.0):
    """Wait until ``check()`` holds, failing after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "not within the bound"
        await asyncio.sleep(0.02)


def breaker_failures(name):
    return get_store().get(f"llm:{name}").failures


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_late_first_token_is_hedged_and_the_slow_stream_cancelled(two, fake_upstream):
    fake_upstream.set_fault("primary", first_token_delay=2.0)
    counted = Hedges("secondary")
    started = time.monotonic()
    stream = await flexiai_django.astream(HELLO, model="auto")
    first_token = time.monotonic() - started
    text = "".join([piece async for piece in stream])
    assert (stream.provider, text) == ("secondary", "secondary: hello")
    assert first_token < 1.5  # the primary's first token was 2 s away
    assert (fake_upstream.hits("primary"), fake_upstream.hits("secondary")) == (1, 1)
    await eventually(lambda: fake_upstream.hangups == 1)  # the primary's call was hung up
    assert counted.delta() == {"started": 1, "won": 1}
    assert stream.result.attempts == 2
    assert [(a.provider, a.outcome) for a in stream.result.trail] == [
        ("primary", "cancelled"), ("secondary", "ok")]
    assert breaker_failures("primary") == 0  # cancelled: no verdict


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_late_plain_answer_is_hedged_and_the_slow_call_cancelled(two, fake_upstream):
    fake_upstream.set_fault("primary", first_token_delay=2.0)
    counted = Hedges("secondary")
    started = time.monotonic()
    result = await flexiai_django.achat(HELLO, model="auto")
    assert (result.provider, result.content) == ("secondary", "secondary: hello")
    assert time.monotonic() - started < 1.5
    await eventually(lambda: fake_upstream.hangups == 1)
    assert fake_upstream.hits("primary") == 1
    assert counted.delta() == {"started": 1, "won": 1}
    assert breaker_failures("primary") == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_hedge_that_loses_is_cancelled(two, fake_upstream):
    fake_upstream.set_fault("primary", first_token_delay=0.4)
    fake_upstream.set_fault("secondary", first_token_delay=2.0)
    counted = Hedges("secondary")
    stream = await flexiai_django.astream(HELLO, model="auto")
    assert stream.provider == "primary"
    assert "".join([piece async for piece in stream]) == "primary: hello"
    await eventually(lambda: fake_upstream.hangups == 1)
    assert fake_upstream.hits("secondary") == 1
    assert counted.delta() == {"started": 1, "lost": 1}
    assert breaker_failures("secondary") == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_fast_first_token_starts_no_second_call(two, fake_upstream):
    counted = Hedges("secondary")
    with override_settings(FLEXIAI={**settings.FLEXIAI, **HEDGED, "BREAKER_STORE": redis_store(),
                                    "HEDGE_DEFAULT_DELAY_SECONDS": 1.0}):
        stream = await flexiai_django.astream(HELLO, model="auto")
        assert "".join([piece async for piece in stream]) == "primary: hello"
        assert (await flexiai_django.achat(HELLO, model="auto")).provider == "primary"
    assert fake_upstream.hits("secondary") == 0
    assert counted.delta() == {}


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_primary_failing_before_the_delay_fails_over_as_usual(two, fake_upstream):
    fake_upstream.set_fault("primary", status=500)
    counted = Hedges("secondary")
    stream = await flexiai_django.astream(HELLO, model="auto")
    assert "".join([piece async for piece in stream]) == "secondary: hello"
    assert counted.delta() == {}
    assert breaker_failures("primary") == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_transient_failure_of_the_only_attempt_is_retried_first(two, fake_upstream):
    from flexiai_django.models import Provider

    await Provider.objects.filter(name="primary").aupdate(max_retries=1)
    fake_upstream.set_fault("primary", status=503, times=1)
    with override_settings(FLEXIAI={**settings.FLEXIAI, **HEDGED, "BREAKER_STORE": redis_store(),
                                    "RETRY_BACKOFF_SECONDS": 0.01}):
        result = await flexiai_django.achat(HELLO, model="auto")
    assert (result.provider, fake_upstream.hits("primary")) == ("primary", 2)
    assert fake_upstream.hits("secondary") == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_no_hedge_once_the_budget_is_spent(two, fake_upstream):
    get_budget().count()  # another request, which with others took every hedge there was
    while await get_budget().aallow():
        pass
    fake_upstream.set_fault("primary", first_token_delay=0.5)
    counted = Hedges("secondary")
    result = await flexiai_django.achat(HELLO, model="auto")
    assert result.provider == "primary"
    assert fake_upstream.hits("secondary") == 0
    assert counted.delta() == {"refused_budget": 1}


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_model_alias_not_listed_never_hedges(two, fake_upstream):
    fake_upstream.set_fault("primary", first_token_delay=0.5)
    stream = await flexiai_django.astream(HELLO, model="steady")
    assert "".join([piece async for piece in stream]) == "primary: hello"
    assert (await flexiai_django.achat(HELLO, model="steady")).provider == "primary"
    assert fake_upstream.hits("secondary") == 0


@pytest.mark.django_db(transaction=True)
def test_the_sync_api_never_hedges(two, fake_upstream):
    fake_upstream.set_fault("primary", first_token_delay=0.5)
    assert flexiai_django.chat(HELLO, model="auto").provider == "primary"
    assert fake_upstream.hits("secondary") == 0


@pytest.fixture
def clock(make_provider):
    """Two providers, breakers in this process on a clock the test moves (the Redis store
    frees a probe slot the same way: tests/breakers/test_stores.py)."""
    clock = FakeClock()
    store = {"BACKEND": "flexiai_django.breakers.memory.LocalBreakerStore",
             "OPTIONS": {"clock": clock}}
    flexiai = {**settings.FLEXIAI, **HEDGED, "BREAKER_STORE": store,
               "FAILURE_THRESHOLD": 3,
               "OPEN_SECONDS": 30, "OPEN_JITTER": 0.0, "HALF_OPEN_MAX_CALLS": 1}
    with override_settings(FLEXIAI=flexiai):
        get_store().clear()
        get_budget().clear()
        make_provider("primary", priority=1, timeout=5.0)
        make_provider("secondary", priority=2, timeout=5.0)
        yield clock
        get_store().clear()
        get_budget().clear()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_cancelled_half_open_probe_frees_its_slot(clock, fake_upstream):
    fake_upstream.set_fault("primary", status=500, times=3)
    for _ in range(3):
        await flexiai_django.achat(HELLO, model="steady")
    clock.advance(30)  # the next call to the primary is its half-open probe
    fake_upstream.set_fault("primary", first_token_delay=2.0, times=1)
    assert (await flexiai_django.achat(HELLO, model="auto")).provider == "secondary"
    assert get_store().get("llm:primary").state is State.HALF_OPEN  # no verdict
    assert (await flexiai_django.achat(HELLO, model="auto")).provider == "primary"  # probes
    assert get_store().get("llm:primary").state is State.CLOSED


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_caller_gone_mid_race_leaves_no_call_running(two, fake_upstream):
    fake_upstream.set_fault("primary", first_token_delay=2.0)
    fake_upstream.set_fault("secondary", first_token_delay=2.0)
    task = asyncio.create_task(flexiai_django.achat(HELLO, model="auto"))
    await eventually(lambda: fake_upstream.hits("secondary") == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await eventually(lambda: fake_upstream.hangups == 2)  # both calls hung up
    assert breaker_failures("primary") == breaker_failures("secondary") == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_the_http_api_streams_the_hedge(async_client, two, fake_upstream):
    fake_upstream.set_fault("primary", first_token_delay=2.0)
    started = time.monotonic()
    response = await async_client.post(
        "/v1/chat/completions", {"model": "auto", "messages": HELLO, "stream": True},
        content_type="application/json")
    body = b"".join([chunk async for chunk in response.streaming_content]).decode()
    assert time.monotonic() - started < 1.5
    assert response["X-FlexiAI-Provider"] == "secondary"
    events = [line[len("data: "):] for line in body.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    assert "".join(json.loads(e)["choices"][0]["delta"].get("content", "")
                   for e in events[:-1]) == "secondary: hello"
    await eventually(lambda: fake_upstream.hangups == 1)


# -- the race's edges, with the attempts played by coroutines (no upstream) ---------------------

LOCAL = {"BACKEND": "flexiai_django.breakers.memory.LocalBreakerStore", "OPTIONS": {}}


@pytest.fixture
def pair():
    """Two provider snapshots and a local store; hedging after 50 ms, a budget per process."""
    from flexiai_django.providers.base import ProviderConfig
    from flexiai_django.validation import chat_request
    from flexiai_django.walk import Walk

    flexiai = {**HEDGED, "BREAKER_STORE": LOCAL, "HEDGE_DEFAULT_DELAY_SECONDS": 0.05}
    with override_settings(FLEXIAI=flexiai):
        get_budget().clear()
        providers = [ProviderConfig(name, "openai", "http://127.0.0.1:9", f"{name}-model")
                     for name in ("primary", "secondary")]
        yield Walk(chat_request(HELLO, model="auto")), get_store(), providers


@pytest.mark.asyncio
async def test_a_request_error_from_the_hedge_stops_the_chain_and_cancels_the_first(pair):
    from flexiai_django.errors import BadRequest

    walk, store, providers = pair
    cancelled = []

    async def start(provider, adapter):
        if provider.name == "secondary":
            raise BadRequest("no", provider="secondary", status=400)
        try:
            await asyncio.sleep(10)
        finally:
            cancelled.append(provider.name)

    with pytest.raises(BadRequest):
        await hedging.race(walk, store, providers, start, streamed=False)
    assert cancelled == ["primary"]
    assert [(a.provider, a.outcome) for a in walk.trail] == [
        ("secondary", "bad_request"), ("primary", "cancelled")]


@pytest.mark.asyncio
async def test_two_answers_at_once_keep_one_and_release_the_other(pair):
    walk, store, providers = pair
    ready, released = asyncio.Event(), []

    async def start(provider, adapter):
        if provider.name == "secondary":
            ready.set()
        await ready.wait()
        return provider.name

    async def discard(value):
        released.append(value)

    won = await hedging.race(walk, store, providers, start, streamed=True, discard=discard)
    assert won.value in ("primary", "secondary")
    assert released == [n for n in ("primary", "secondary") if n != won.value]


@pytest.mark.asyncio
async def test_a_cancelled_request_cancels_both_attempts_and_waits_for_them(pair):
    walk, store, providers = pair
    started, ended = [], []

    async def start(provider, adapter):
        started.append(provider.name)
        try:
            await asyncio.sleep(10)
        finally:
            await asyncio.sleep(0.01)  # closing a connection takes a moment
            ended.append(provider.name)

    task = asyncio.create_task(hedging.race(walk, store, providers, start, streamed=False))
    await eventually(lambda: len(started) == 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(ended) == ["primary", "secondary"]  # both ended before the race returned


@pytest.mark.asyncio
async def test_an_answer_beside_a_request_error_is_released(pair):
    from flexiai_django.errors import BadRequest

    walk, store, providers = pair
    ready, released = asyncio.Event(), []

    async def start(provider, adapter):
        if provider.name == "secondary":
            ready.set()
            raise BadRequest("no", provider="secondary", status=400)
        await ready.wait()
        return provider.name

    async def discard(value):
        released.append(value)

    with pytest.raises(BadRequest):  # the request error stops the chain, as without hedging
        await hedging.race(walk, store, providers, start, streamed=True, discard=discard)
    assert released == ["primary"]
