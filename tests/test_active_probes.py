"""Active probing: who probes, when, and what a probe's outcome does to the breaker.

The scheduling is driven by an injected clock over a real in-process store (whose
leases stand for Redis's here; the Redis lease is in tests/breakers/test_stores.py);
the probe itself is a real call to the fake upstream.
"""

import logging
import threading
import time

import pytest
from django.test import override_settings
from prometheus_client import REGISTRY

from flexiai_django import active_probes, process_role, provider_cache, signals, warmup
from flexiai_django.active_probes import Prober, Runner, call_provider, wake_delay
from flexiai_django.breakers import get_store
from flexiai_django.breakers.memory import LocalBreakerStore
from flexiai_django.breakers.state import BreakerConfig, State
from flexiai_django.providers.base import ProviderConfig
from flexiai_django.testing.clock import FakeClock

CFG = BreakerConfig(failure_threshold=2, success_threshold=1, open_seconds=60, jitter=0.0)


def provider(name="p", **fields):
    return ProviderConfig(name=name, kind="openai", base_url="http://127.0.0.1:9/v1",
                          model="m", breaker=CFG, **fields)


def trip(store, p):
    for _ in range(CFG.failure_threshold):
        store.record(p.breaker_name, CFG, success=False, probe=False, error="server_error")


class Upstream:
    """A probe call that answers from a script and advances the clock while it runs."""

    def __init__(self, clock, outcomes=("ok",), takes=0.05):
        self.clock, self.outcomes, self.takes, self.calls = clock, list(outcomes), takes, []

    def __call__(self, p, timeout):
        self.calls.append((p.name, self.clock.now))
        self.clock.advance(self.takes)
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        return outcome, None if outcome == "ok" else "server_error"


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def store(clock):
    return LocalBreakerStore(clock=clock, rand=lambda: 0.5)


def prober(store, clock, providers, call, rand=0.5):
    listed = providers if callable(providers) else (lambda: providers)
    return Prober(store=lambda: store, providers=listed, call=call, clock=clock,
                  rand=lambda: rand, wall=clock)


def test_only_open_breakers_are_probed(store, clock):
    ps = [provider(n) for n in ("open", "closed", "forced", "disabled", "half")]
    for p in (ps[0], ps[4]):
        trip(store, p)
    store.force(ps[2].breaker_name, State.FORCED_OPEN)
    store.force(ps[3].breaker_name, State.DISABLED)
    clock.advance(60)
    store.acquire(ps[4].breaker_name, CFG)  # half-open, a real request is its probe
    upstream = Upstream(clock, ["failed"])
    assert prober(store, clock, ps, upstream).tick(5) == {"open": "failed"}


def test_a_provider_that_asked_us_to_wait_is_not_probed_before_its_retry_after(store, clock):
    p = provider()
    trip(store, p)
    store.cool_down(p.breaker_name, CFG, 12)
    upstream = Upstream(clock)
    assert prober(store, clock, [p], upstream).tick(5) == {}
    clock.advance(12)
    assert prober(store, clock, [p], upstream).tick(5) == {"p": "ok"}


def test_nothing_open_reads_no_provider_list(store, clock):
    def unread():
        raise AssertionError("the provider list was read")

    assert prober(store, clock, unread, Upstream(clock)).tick(5) == {}


def test_a_successful_probe_closes_the_breaker_at_once(store, clock):
    p = provider()
    trip(store, p)
    assert prober(store, clock, [p], Upstream(clock)).tick(5) == {"p": "ok"}
    state = store.get(p.breaker_name)
    assert (state.state, state.last_probe, state.active_probes) == (State.CLOSED, "ok", 1)
    assert store.acquire(p.breaker_name, CFG).allowed


def probes_counted(outcome, name="p"):
    labels = {"provider": name, "outcome": outcome}
    return REGISTRY.get_sample_value("flexiai_active_probes_total", labels) or 0


def test_a_failed_probe_leaves_the_open_period_as_it_was(store, clock):
    p = provider()
    trip(store, p)
    retry_at = store.get(p.breaker_name).retry_at
    counted = probes_counted("server_error")
    prober(store, clock, [p], Upstream(clock, ["failed"])).tick(5)
    assert probes_counted("server_error") == counted + 1
    state = store.get(p.breaker_name)
    assert (state.state, state.retry_at, state.openings) == (State.OPEN, retry_at, 1)
    assert (state.last_probe, state.last_error) == ("failed", "server_error")


def test_an_inconclusive_or_broken_probe_changes_no_state(store, clock, caplog):
    p = provider(api_key="sk-secret-never-logged")
    trip(store, p)
    before = store.get(p.breaker_name)

    def broken(p, timeout):
        raise RuntimeError(p.api_key)

    counted = probes_counted("error")
    assert prober(store, clock, [p], broken).tick(5) == {"p": "error"}
    assert probes_counted("error") == counted + 1
    clock.advance(5)
    assert prober(store, clock, [p], Upstream(clock, ["inconclusive"])).tick(5) == {
        "p": "inconclusive"}
    assert store.get(p.breaker_name) == before
    assert "sk-secret" not in caplog.text and "RuntimeError" in caplog.text


def test_one_probe_per_interval_however_many_processes_share_the_store(store, clock):
    p = provider()
    trip(store, p)
    upstream = Upstream(clock, ["failed"])
    processes = [prober(store, clock, [p], upstream) for _ in range(8)]
    for process in processes:
        process.tick(5)
    assert len(upstream.calls) == 1
    clock.advance(4.9)
    assert sum(len(process.tick(5)) for process in processes) == 0
    clock.advance(0.2)
    assert sum(len(process.tick(5)) for process in processes) == 1


def test_a_slow_probe_holds_the_lease_until_it_returns(store, clock):
    p = provider(timeout=3.0)
    trip(store, p)
    other = prober(store, clock, [p], Upstream(clock, ["failed"]))
    during = []

    def slow(p, timeout):
        clock.advance(3)  # longer than the interval, within interval + the probe's timeout
        during.append(other.tick(2))
        return "failed", "timeout"

    prober(store, clock, [p], slow).tick(2)
    assert during == [{}]
    assert other.tick(2) == {"p": "failed"}  # the interval since the slow probe began is over


@pytest.mark.parametrize("workers", [1, 4, 8])
def test_probes_per_minute_stay_at_one_per_interval_for_any_number_of_workers(workers):
    """Each process wakes at its own jittered times; the lease lets one probe through."""
    clock = FakeClock()
    store = LocalBreakerStore(clock=clock)
    p = provider()
    trip(store, p)
    upstream = Upstream(clock, ["failed"])
    rands = iter([(i * 0.618) % 1 for i in range(10_000)])
    processes = [Prober(store=lambda: store, providers=lambda: [p], call=upstream, clock=clock,
                        rand=lambda: next(rands)) for _ in range(workers)]
    start = clock.now
    wakes = [(start + i * 0.37, i) for i in range(workers)]
    while True:
        wakes.sort()
        at, i = wakes.pop(0)
        if at >= start + 60:
            break
        clock.now = max(clock.now, at)
        processes[i].tick(5)
        wakes.append((clock.now + processes[i].wait(5), i))
    assert 8 <= len(upstream.calls) <= 12
    gaps = [b[1] - a[1] for a, b in zip(upstream.calls, upstream.calls[1:], strict=False)]
    assert min(gaps) >= 5


def test_the_wake_delay_is_spread_within_a_fraction_of_the_interval():
    assert wake_delay(5, 0.0) == pytest.approx(1.0)
    assert wake_delay(5, 0.999) == pytest.approx(2.5, abs=0.01)


@pytest.mark.django_db
def test_a_probe_is_a_minimal_real_call(fake_upstream, make_provider):
    make_provider("primary", api_key="sk-probe-key")
    config = provider_cache.get_providers()[0]
    fake_upstream.set_fault("primary", status=503)
    assert call_provider(config, 1.0) == ("failed", "server_error")
    fake_upstream.clear_faults()
    assert call_provider(config, 1.0) == ("ok", None)
    sent = fake_upstream.requests("primary")[-1].json
    assert sent["messages"] == [{"role": "user", "content": "ping"}]
    assert sent["max_tokens"] == 1 and not sent.get("stream")


@pytest.mark.django_db
def test_the_probe_timeout_is_short(fake_upstream, make_provider, clock):
    make_provider("primary", timeout=30.0)
    fake_upstream.set_fault("primary", delay=30)
    config = provider_cache.get_providers()[0]
    store = LocalBreakerStore(clock=clock)
    trip(store, config)
    started = time.monotonic()
    try:
        outcomes = Prober(store=lambda: store, providers=lambda: [config]).tick(0.5)
    finally:
        fake_upstream.clear_faults()
    assert outcomes == {"primary": "failed"}
    assert store.get(config.breaker_name).last_error == "timeout"
    assert time.monotonic() - started < 2.5  # 1 s: the interval, at least 1 s


def test_the_probe_timeout_is_the_shortest_of_the_provider_s_the_interval_and_the_cap():
    assert active_probes.probe_timeout(provider(timeout=30), 0.5) == 1.0
    assert active_probes.probe_timeout(provider(timeout=30), 3) == 3
    assert active_probes.probe_timeout(provider(timeout=30), 60) == active_probes.PROBE_TIMEOUT_CAP
    assert active_probes.probe_timeout(provider(timeout=0.3), 5) == 0.3


@pytest.mark.django_db
def test_the_thread_closes_a_recovered_breaker_and_stops_cleanly(fake_upstream, make_provider,
                                                                 settings):
    make_provider("primary")
    config = provider_cache.get_providers()[0]
    with override_settings(FLEXIAI={**settings.FLEXIAI, "ACTIVE_PROBE_SECONDS": 0.2}):
        store = get_store()
        trip(store, config)
        runner = Runner(Prober(providers=lambda: [config])).start()
        try:
            started = time.monotonic()
            while store.get(config.breaker_name).state is not State.CLOSED:
                assert time.monotonic() - started < 3, "the prober never closed the breaker"
                time.sleep(0.02)
        finally:
            runner.stop()
        assert not runner.thread.is_alive()
        assert runner.prober.sent >= 1


def test_the_thread_survives_a_failing_pass(caplog, clock):
    store = LocalBreakerStore(clock=clock)
    trip(store, provider())
    passes = []

    def boom():
        passes.append(1)
        raise ValueError("no providers")

    with override_settings(FLEXIAI={"ACTIVE_PROBE_SECONDS": 0.05}):
        runner = Runner(Prober(store=lambda: store, providers=boom)).start()
        try:
            started = time.monotonic()
            with caplog.at_level(logging.WARNING, "flexiai_django"):
                while len(passes) < 3:
                    assert time.monotonic() - started < 3
                    time.sleep(0.01)
            assert runner.thread.is_alive()
        finally:
            runner.stop()
    assert not runner.thread.is_alive()
    assert "active prober pass failed (ValueError)" in caplog.text


@pytest.mark.django_db
def test_circuit_breakers_json_shows_the_last_probe_and_the_probes_sent(client, clock):
    p = provider("primary")
    trip(get_store(), p)
    Prober(providers=lambda: [p], call=Upstream(clock, ["failed"])).tick(5)
    shown = client.get("/circuit-breakers").json()["breakers"][p.breaker_name]
    assert (shown["state"], shown["last_probe"], shown["active_probes"]) == ("open", "failed", 1)
    assert shown["last_error"] == "server_error" and shown["last_probe_at"] > 0


def test_asgi_lifespan_shutdown_stops_this_process_s_prober():
    from asgiref.sync import async_to_sync

    from flexiai_django import lifespan

    runner = active_probes.start()
    assert runner.thread.is_alive()
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent = []

    async def receive():
        return next(messages)

    async def send(message):
        sent.append(message["type"])

    async_to_sync(lifespan.application)({"type": "lifespan"}, receive, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    runner.thread.join(2)
    assert not runner.thread.is_alive()
    again = active_probes.start()
    assert again is not runner  # a later store build starts a fresh one
    active_probes.stop()
    assert not again.thread.is_alive()


def _probers_alive():
    return sorted(t.name for t in threading.enumerate()
                  if t.name in ("flexiai-prober", "flexiai-warmup") and t.is_alive())


@pytest.mark.parametrize(("command", "held", "started"), [
    (None, False, True),  # a server (gunicorn, uvicorn, daphne) building its store
    ("runserver", False, True),
    ("shell", False, False),  # a one-off command has nothing to keep healthy
    (None, True, False),  # a test process under the pytest plugin
])
def test_building_the_store_starts_the_probers_only_in_a_serving_process(
        command, held, started, monkeypatch):
    monkeypatch.setattr(process_role, "_command", command)
    monkeypatch.setattr(process_role, "_probers_held", int(held))
    try:
        signals.store_ready.send(sender=LocalBreakerStore, store=get_store())  # a new store
        assert _probers_alive() == (["flexiai-prober", "flexiai-warmup"] if started else [])
    finally:
        active_probes.stop()
        warmup.stop()
    assert _probers_alive() == []


def test_the_plugin_holds_the_probers_for_the_whole_test_session():
    assert not process_role.runs_probers()
    with override_settings(FLEXIAI={"ACTIVE_PROBE_SECONDS": 5.0}):
        get_store()
    assert _probers_alive() == []
