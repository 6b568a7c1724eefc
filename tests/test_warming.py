"""Warming providers: left out but for a trickle, probed once per interval deployment-wide,
and back in the chain once a warm-up probe answers."""

import time

import pytest
from django.test import override_settings

from flexiai_django import chat, provider_cache, warming, warmup
from flexiai_django.active_probes import Runner
from flexiai_django.breakers.memory import LocalBreakerStore
from flexiai_django.chat_types import ChatRequest, Message
from flexiai_django.models import Provider
from flexiai_django.providers.base import ProviderConfig
from flexiai_django.testing.clock import FakeClock
from flexiai_django.walk import Walk
from flexiai_django.warmup import WarmupProber


def provider(name, warm=True, priority=0):
    return ProviderConfig(name=name, kind="openai", base_url="http://127.0.0.1:9/v1",
                          model="m", priority=priority, warming=not warm)


def names(providers):
    return [p.name for p in providers]


def test_without_a_trickle_a_warming_provider_gets_nothing():
    ps = [provider("cold", warm=False), provider("a"), provider("b")]
    assert names(warming.admit(ps, 0.0, lambda: 0.0)) == ["a", "b"]


def test_the_trickle_lets_that_share_of_requests_through_in_place():
    ps = [provider("cold", warm=False), provider("a")]
    draws = iter([0.05, 0.5, 0.09, 0.99, 0.1])
    kept = [names(warming.admit(ps, 0.1, lambda: next(draws))) for _ in range(5)]
    assert kept == [["cold", "a"], ["a"], ["cold", "a"], ["a"], ["a"]]


def test_no_warming_provider_draws_no_random_number():
    def never():
        raise AssertionError("drew a random number")

    assert names(warming.admit([provider("a"), provider("b")], 0.5, never)) == ["a", "b"]


def test_the_chain_leaves_warming_providers_out_of_its_candidates():
    request = ChatRequest(messages=(Message(role="user", content="hi"),))
    ps = (provider("cold", warm=False, priority=0), provider("warm", priority=1))
    with override_settings(FLEXIAI={"WARMING_TRICKLE": 0.0}):
        assert names(Walk(request).candidates(ps)) == ["warm"]
    with override_settings(FLEXIAI={"WARMING_TRICKLE": 0.5}):
        assert names(Walk(request, rand=lambda: 0.2).candidates(ps)) == ["cold", "warm"]


class Answers:
    """A warm-up call scripted per attempt; counts calls."""

    def __init__(self, *outcomes):
        self.outcomes, self.calls = list(outcomes), []

    def __call__(self, p, timeout):
        self.calls.append(p.name)
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        return outcome, None if outcome == "ok" else "server_error"


def test_one_warm_up_probe_per_interval_across_processes_and_only_an_answer_warms():
    clock = FakeClock()
    store = LocalBreakerStore(clock=clock)
    cold = provider("cold", warm=False)
    answers, warmed = Answers("failed", "failed", "ok"), []
    processes = [WarmupProber(store=lambda: store, providers=lambda: [cold, provider("a")],
                              call=answers, warmed=lambda n: warmed.append(n) or True,
                              clock=clock) for _ in range(6)]
    assert [p.tick(5) for p in processes] == [{"cold": "failed"}] + [{}] * 5
    assert answers.calls == ["cold"] and warmed == []
    clock.advance(4.9)
    assert sum(len(p.tick(5)) for p in processes) == 0
    clock.advance(0.2)
    assert sum(len(p.tick(5)) for p in processes) == 1
    clock.advance(5.1)
    assert {k: v for p in processes for k, v in p.tick(5).items()} == {"cold": "ok"}
    assert warmed == ["cold"] and answers.calls == ["cold"] * 3


def test_nothing_warming_takes_no_lease():
    class NoStore:
        def take_lease(self, *args):
            raise AssertionError("a lease was asked for")

    prober = WarmupProber(store=NoStore, providers=lambda: [provider("a")], call=Answers("ok"))
    assert prober.tick(5) == {}


@pytest.mark.django_db
def test_a_cold_upstream_gets_traffic_once_its_warm_up_probe_answers(fake_upstream,
                                                                     make_provider, caplog):
    """The model is loading for 1.5 s (503s): no request reaches it; probes fail; once it
    answers, the flag is cleared in the database and the next request goes to it."""
    make_provider("cold", priority=0, warming=True)
    make_provider("warm", priority=1)
    fake_upstream.set_fault("cold", status=503, down_for=1.5)
    clock = FakeClock()
    store = LocalBreakerStore(clock=clock)
    prober = WarmupProber(store=lambda: store)
    for _ in range(3):
        assert chat("hi").provider == "warm"
    assert prober.tick(0.5) == {"cold": "failed"}
    assert Provider.objects.get(name="cold").warming
    started = time.monotonic()
    outcomes = {}
    while outcomes != {"cold": "ok"}:
        assert time.monotonic() - started < 10, "the cold provider never warmed"
        clock.advance(0.5)
        outcomes = prober.tick(0.5)
        time.sleep(0.05)
    assert not Provider.objects.get(name="cold").warming
    assert "provider cold answered its warm-up probe" in caplog.text
    assert chat("hi").provider == "cold"  # this process's cache was dropped by the save
    cold_calls = fake_upstream.requests("cold")
    assert [r.json["messages"][0]["content"] for r in cold_calls][-1] == "hi"
    assert all(r.json["max_tokens"] == 1 for r in cold_calls[:-1])  # before: probes only


@pytest.mark.django_db(transaction=True)  # the thread reads and saves the row
def test_the_warm_up_thread_warms_a_provider_and_stops_cleanly(fake_upstream, make_provider):
    make_provider("cold", warming=True)
    runner = Runner(WarmupProber(), interval=lambda: 0.2, name="flexiai-warmup",
                    label="warm-up prober").start()
    try:
        started = time.monotonic()
        while Provider.objects.get(name="cold").warming:
            assert time.monotonic() - started < 5, "the warm-up prober never warmed it"
            time.sleep(0.05)
    finally:
        runner.stop()
    assert not runner.thread.is_alive()
    provider_cache.invalidate()
    assert not provider_cache.get_providers()[0].warming


def test_start_and_stop_are_per_process():
    with override_settings(FLEXIAI={"WARMUP_PROBE_SECONDS": None}):
        runner = warmup.start()
        assert warmup.start() is runner and runner.thread.is_alive()
        warmup.stop()
        assert not runner.thread.is_alive()


def test_with_nothing_warming_the_prober_looks_once_an_interval():
    cold = [provider("cold", warm=False)]
    listed = [[provider("a")]]
    prober = WarmupProber(store=LocalBreakerStore, providers=lambda: listed[0],
                          call=Answers("failed"), rand=lambda: 0.0)
    prober.tick(5)
    assert prober.wait(5) == 5
    listed[0] = cold
    prober.tick(5)
    assert prober.wait(5) == pytest.approx(1.0)  # 20 % of the interval: the lease race


@pytest.mark.django_db
def test_a_new_session_is_not_pinned_to_a_warming_provider(client, make_provider):
    make_provider("cold", priority=1, warming=True)
    make_provider("warm", priority=2)
    response = client.post("/v1/sessions", {"id": "conv-w"}, content_type="application/json")
    assert response.status_code == 201 and response.json()["provider"] == "warm"
