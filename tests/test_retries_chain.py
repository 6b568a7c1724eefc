"""Retry before failing over, and a provider's Retry-After as a deployment-wide cooldown:
the fallback chain against the fake upstream, with both breaker stores and real time."""

import time

import pytest
from django.test import override_settings
from prometheus_client import REGISTRY

import flexiai_django
from flexiai_django.breakers import get_store

pytestmark = pytest.mark.django_db

HELLO = [{"role": "user", "content": "hello"}]
STORES = {
    "local": "flexiai_django.breakers.memory.LocalBreakerStore",
    "redis": "flexiai_django.breakers.redis_store.RedisBreakerStore",
}
FLEXIAI = {"FAILURE_THRESHOLD": 5, "OPEN_JITTER": 0.0, "DEGRADED_MESSAGE": None,
           "CACHE_ENABLED": False, "RETRY_BACKOFF_SECONDS": 0.05,
           "RETRY_AFTER_CAP_SECONDS": 2.0, "ACTIVE_PROBE_SECONDS": None,
           "WARMUP_PROBE_SECONDS": None}


def with_store(kind, **flexiai):
    store = {"BACKEND": STORES[kind], "OPTIONS": {}}
    return override_settings(FLEXIAI={**FLEXIAI, "BREAKER_STORE": store, **flexiai})


@pytest.fixture(params=sorted(STORES))
def store_kind(request):
    with with_store(request.param):
        yield request.param


def providers(make_provider):
    return (make_provider("primary", priority=1, max_retries=1),
            make_provider("secondary", priority=2, max_retries=1))


@pytest.fixture
def two(make_provider, store_kind):
    """Both stores: where the cooldown lives matters."""
    return providers(make_provider)


@pytest.fixture
def shared(make_provider):
    """The Redis store only: retries themselves do not depend on the store."""
    with with_store("redis"):
        yield providers(make_provider)


def trail(result):
    return [(a.provider, a.outcome) for a in result.trail]


def retries_counted(provider):
    return REGISTRY.get_sample_value("flexiai_retries_total", {"provider": provider}) or 0.0


def cooldown_left(name):
    until = get_store().get(f"llm:{name}").cooldown_until
    return None if until is None else until - time.time()


def test_a_short_retry_after_is_waited_for_and_the_same_provider_answers(two, fake_upstream):
    fake_upstream.set_fault("primary", status=429, retry_after=1, times=1)
    retried = retries_counted("primary")
    started = time.monotonic()

    result = flexiai_django.chat(HELLO)

    assert time.monotonic() - started >= 1.0
    assert result.content == "primary: hello" and result.attempts == 2
    assert trail(result) == [("primary", "rate_limited"), ("primary", "ok")]
    assert (fake_upstream.hits("primary"), fake_upstream.hits("secondary")) == (2, 0)
    assert retries_counted("primary") == retried + 1


def test_a_long_retry_after_fails_over_at_once_and_cools_the_provider_down(
        two, fake_upstream):
    fake_upstream.set_fault("primary", status=429, retry_after=30, times=1)
    started = time.monotonic()

    result = flexiai_django.chat(HELLO)

    assert time.monotonic() - started < 1.0
    assert result.provider == "secondary"
    assert trail(result) == [("primary", "rate_limited"), ("secondary", "ok")]
    assert fake_upstream.hits("primary") == 1
    assert 28 < cooldown_left("primary") <= 30

    again = flexiai_django.chat(HELLO)  # the primary is healthy again, but asked for 30 s

    assert trail(again) == [("primary", "skipped:cooling_down"), ("secondary", "ok")]
    assert fake_upstream.hits("primary") == 1


def test_the_cooldown_is_in_the_circuit_breakers_view(shared, fake_upstream, client,
                                                     api_token):
    fake_upstream.set_fault("primary", status=429, retry_after=30, times=1)
    flexiai_django.chat(HELLO)

    view = client.get("/circuit-breakers", HTTP_AUTHORIZATION=f"Bearer {api_token}").json()

    assert 28 < view["breakers"]["llm:primary"]["cooldown_until"] - time.time() <= 30
    assert view["breakers"]["llm:primary"]["failures"] == 1


def test_a_retry_after_as_an_http_date_is_understood(two, fake_upstream):
    fake_upstream.set_fault("primary", status=503, retry_after=30, retry_after_date=True)

    result = flexiai_django.chat(HELLO)

    assert trail(result) == [("primary", "server_error"), ("secondary", "ok")]
    assert 27 < cooldown_left("primary") <= 30  # the date has whole seconds


def test_the_cooldown_is_capped_at_the_longest_open_period(two, fake_upstream):
    with with_store("local", MAX_OPEN_SECONDS=10):
        fake_upstream.set_fault("primary", status=429, retry_after=3600, times=1)
        flexiai_django.chat(HELLO)
        assert 8 < cooldown_left("primary") <= 10


def test_every_provider_cooling_down_says_when_to_come_back(two, fake_upstream):
    fake_upstream.set_fault("primary", status=429, retry_after=20)
    fake_upstream.set_fault("secondary", status=429, retry_after=40)
    with pytest.raises(flexiai_django.NoProviderAvailable):
        flexiai_django.chat(HELLO)

    with pytest.raises(flexiai_django.NoProviderAvailable) as refused:
        flexiai_django.chat(HELLO)

    assert 18 <= refused.value.retry_after <= 20
    assert refused.value.errors == ["primary: skipped:cooling_down",
                                    "secondary: skipped:cooling_down"]
    assert (fake_upstream.hits("primary"), fake_upstream.hits("secondary")) == (1, 1)


@pytest.mark.parametrize("fault", [{"status": 500}, {"status": 502}, {"status": 503},
                                   {"status": 504}, {"reset": True}])
def test_a_transient_failure_is_retried_after_a_short_backoff(shared, fake_upstream, fault):
    fake_upstream.set_fault("primary", times=1, **fault)

    result = flexiai_django.chat(HELLO)

    assert result.provider == "primary" and fake_upstream.hits("primary") == 2
    assert result.trail[-1].outcome == "ok" and len(result.trail) == 2


def test_retries_stop_at_max_retries_then_the_chain_fails_over(make_provider, fake_upstream):
    with with_store("redis"):
        make_provider("primary", priority=1, max_retries=2)
        make_provider("secondary", priority=2)
        fake_upstream.set_fault("primary", status=500)

        result = flexiai_django.chat(HELLO)

    assert trail(result) == [("primary", "server_error")] * 3 + [("secondary", "ok")]
    assert get_store().get("llm:primary").failures == 3  # each try is a breaker failure


def test_a_retry_asks_the_breaker_again(make_provider, fake_upstream):
    with with_store("redis", FAILURE_THRESHOLD=1):
        make_provider("primary", priority=1, max_retries=1)
        make_provider("secondary", priority=2)
        fake_upstream.set_fault("primary", status=500)

        result = flexiai_django.chat(HELLO)

    assert trail(result) == [("primary", "server_error"), ("primary", "skipped:open"),
                             ("secondary", "ok")]
    assert fake_upstream.hits("primary") == 1


@pytest.mark.parametrize("fault", [{"delay": 1.0}, {"status": 401}, {"status": 501},
                                   {"malformed": True}, {"truncated": True}])
def test_other_failures_are_not_retried(make_provider, fake_upstream, fault):
    """A slow provider's timeout, our key, an unknown status, a garbled reply, a reply
    cut after it began (the provider may have done the work)."""
    with with_store("local"):
        make_provider("primary", priority=1, max_retries=3, timeout=0.3)
        make_provider("secondary", priority=2)
        fake_upstream.set_fault("primary", **fault)

        result = flexiai_django.chat(HELLO)

    assert result.provider == "secondary" and fake_upstream.hits("primary") == 1
    assert len(result.trail) == 2 and result.trail[0].outcome != "ok"


# -- streams: retried only before the first piece ---------------------------------------


def test_a_stream_is_retried_before_its_first_piece(shared, fake_upstream):
    fake_upstream.set_fault("primary", status=503, times=1)

    stream = flexiai_django.stream(HELLO)

    assert (stream.provider, stream.attempts) == ("primary", 2)
    assert "".join(stream) == "primary: hello"
    assert fake_upstream.hits("primary") == 2


def test_a_stream_cut_after_its_reply_began_is_not_retried(shared, fake_upstream):
    fake_upstream.set_fault("primary", stream_fail_after=0, times=1)

    stream = flexiai_django.stream(HELLO)

    assert stream.provider == "secondary" and fake_upstream.hits("primary") == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_achat_waits_for_a_short_retry_after_too(shared, fake_upstream):
    fake_upstream.set_fault("primary", status=429, retry_after=0.5, times=1)
    started = time.monotonic()

    result = await flexiai_django.achat(HELLO)

    assert time.monotonic() - started >= 0.5
    assert trail(result) == [("primary", "rate_limited"), ("primary", "ok")]


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_astream_retries_and_cools_down_like_stream(shared, fake_upstream):
    fake_upstream.set_fault("primary", status=502, times=1)
    stream = await flexiai_django.astream(HELLO)
    assert stream.provider == "primary" and fake_upstream.hits("primary") == 2
    assert "".join([piece async for piece in stream]) == "primary: hello"

    fake_upstream.set_fault("primary", status=429, retry_after=30, times=1)
    stream = await flexiai_django.astream(HELLO)
    assert stream.provider == "secondary" and 28 < cooldown_left("primary") <= 30
