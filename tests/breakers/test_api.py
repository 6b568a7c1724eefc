"""breaker("name") for any outbound call: sync, async, decorator, custom failure rules."""

import pytest
from django.test import override_settings

from flexiai_django import CircuitOpen, breaker
from flexiai_django.breakers import Breaker, default_config, get_store
from flexiai_django.breakers.memory import LocalBreakerStore
from flexiai_django.breakers.state import State
from flexiai_django.testing.clock import FakeClock


class Boom(Exception):
    pass


def explode():
    raise Boom("down")


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def store(clock):
    return LocalBreakerStore(clock=clock, rand=lambda: 0.5)


def test_call_passes_arguments_and_returns_the_result(store):
    assert breaker("svc", store=store).call(lambda a, b=0: a + b, 1, b=2) == 3


def test_threshold_failures_open_it_and_further_calls_are_refused_unsent(store):
    b = breaker("svc", store=store, failure_threshold=2, open_seconds=10, jitter=0)
    for _ in range(2):
        with pytest.raises(Boom):
            b.call(explode)
    calls = []
    with pytest.raises(CircuitOpen) as caught:
        b.call(lambda: calls.append(1))
    assert calls == []
    assert caught.value.state == "open"
    assert caught.value.retry_after == pytest.approx(10)


def test_after_the_open_period_one_success_closes_it(store, clock):
    b = breaker("svc", store=store, failure_threshold=1, open_seconds=10, jitter=0)
    with pytest.raises(Boom):
        b.call(explode)
    clock.advance(10)
    assert b.call(lambda: "ok") == "ok"
    assert b.state.state is State.CLOSED


def test_is_failure_decides_which_exceptions_count(store):
    b = breaker("svc", store=store, failure_threshold=1,
                is_failure=lambda exc: None if isinstance(exc, KeyError) else True)
    with pytest.raises(KeyError):
        b.call(lambda: {}["missing"])
    assert b.state.state is State.CLOSED
    with pytest.raises(Boom):
        b.call(explode)
    assert b.state.state is State.OPEN


def test_the_decorator_wraps_sync_functions(store):
    @breaker("svc", store=store, failure_threshold=1)
    def flaky(ok):
        if not ok:
            raise Boom
        return "fine"

    assert flaky(True) == "fine"
    assert flaky.__name__ == "flaky"
    with pytest.raises(Boom):
        flaky(False)
    with pytest.raises(CircuitOpen):
        flaky(True)


@pytest.mark.asyncio
async def test_acall_and_the_async_decorator(store):
    b = breaker("svc", store=store, failure_threshold=1)

    async def fetch(value):
        return value

    assert await b.acall(fetch, 5) == 5

    @b
    async def broken():
        raise Boom

    with pytest.raises(Boom):
        await broken()
    with pytest.raises(CircuitOpen):
        await b.acall(fetch, 5)


def test_reset_force_open_and_disable(store):
    b = breaker("svc", store=store)
    b.force_open()
    with pytest.raises(CircuitOpen):
        b.call(lambda: 1)
    b.disable()
    assert b.call(lambda: 1) == 1
    b.reset()
    assert b.state.state is State.CLOSED


def test_options_default_to_the_flexiai_settings():
    with override_settings(FLEXIAI={"FAILURE_THRESHOLD": 9, "OPEN_SECONDS": 4}):
        config = breaker("svc").config
    assert (config.failure_threshold, config.open_seconds) == (9, 4)


def test_an_unknown_option_is_refused():
    with pytest.raises(TypeError, match="threshhold"):
        default_config(threshhold=3)


def test_breakers_of_the_same_name_share_state():
    breaker("shared", failure_threshold=1).force_open()
    assert Breaker("shared").state.state is State.FORCED_OPEN


def test_the_store_backend_comes_from_settings():
    flexiai = {"BREAKER_STORE": {"BACKEND": "tests.breakers.test_api.RecordingStore",
                                 "OPTIONS": {"label": "x"}}}
    with override_settings(FLEXIAI=flexiai):
        store = get_store()
        assert isinstance(store, RecordingStore) and store.label == "x"
    assert not isinstance(get_store(), RecordingStore)


class RecordingStore(LocalBreakerStore):
    def __init__(self, label):
        super().__init__()
        self.label = label
