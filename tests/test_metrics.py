"""Prometheus metrics, in one process: what each kind of call records, what /metrics shows.

The registry lives for the whole test session, so every test compares values from
before and after what it does (:class:`Counts`). The multi-worker behaviour is in
tests/multiprocess/test_metrics.py.
"""

import asyncio
import json
import os
import re
import runpy
import stat
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from django.conf import settings
from django.test import override_settings
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

import flexiai_django
from flexiai_django import breaker, cache_tier, metrics
from flexiai_django.breakers.redis_store import RedisBreakerStore
from flexiai_django.breakers.state import BreakerConfig, State
from flexiai_django.capacity.planner import ACTIONS, REASONS
from flexiai_django.testing.redis_server import RedisServer

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
HELLO = [{"role": "user", "content": "hello"}]
COUNTED = ("flexiai_requests_total", "flexiai_provider_attempts_total", "flexiai_fallback_total",
           "flexiai_breaker_rejections_total", "flexiai_breaker_transitions_total",
           "flexiai_provider_latency_seconds_count")


def sample_key(name, labels):
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{name}{{{inner}}}"


def flexiai_samples(families):
    return {sample_key(s.name, s.labels): s.value
            for family in families for s in family.samples if s.name.startswith("flexiai_")}


class Counts:
    """Values of the counted flexiai samples, relative to when this object was made."""

    def __init__(self):
        self.start = self._now()

    @staticmethod
    def _now():
        return {k: v for k, v in flexiai_samples(REGISTRY.collect()).items()
                if k.split("{")[0] in COUNTED}

    def changed(self):
        """Every counted sample that moved, with how much: nothing else changed."""
        now = self._now()
        return {k: v - self.start.get(k, 0) for k, v in now.items()
                if v != self.start.get(k, 0)}


@pytest.fixture
def counts():
    return Counts()


@pytest.fixture
def two(make_provider):
    return make_provider("primary", priority=1), make_provider("secondary", priority=2)


THRESHOLD_2 = {"FAILURE_THRESHOLD": 2, "OPEN_SECONDS": 30, "OPEN_JITTER": 0.0,
               "DEGRADED_MESSAGE": None}


# -- what the chain records ------------------------------------------------------------------

def test_an_answer_counts_one_request_one_attempt_and_its_latency(two, counts):
    flexiai_django.chat(HELLO)
    assert counts.changed() == {
        'flexiai_requests_total{provider="primary",tier="provider",outcome="ok"}': 1,
        'flexiai_provider_attempts_total{provider="primary",outcome="ok"}': 1,
        'flexiai_provider_latency_seconds_count{provider="primary"}': 1,
    }


def test_a_failover_counts_the_failed_attempt_and_the_request_once(two, counts,
                                                                    fake_upstream):
    fake_upstream.set_fault("primary", status=500)
    flexiai_django.chat(HELLO)
    assert counts.changed() == {
        'flexiai_requests_total{provider="secondary",tier="provider",outcome="ok"}': 1,
        'flexiai_provider_attempts_total{provider="primary",outcome="server_error"}': 1,
        'flexiai_provider_attempts_total{provider="secondary",outcome="ok"}': 1,
        'flexiai_provider_latency_seconds_count{provider="secondary"}': 1,
    }


@pytest.mark.parametrize("backend", ["local", "redis"])
def test_a_breaker_that_opens_counts_one_transition_then_rejections(two, fake_upstream,
                                                                    backend):
    store = {"local": "flexiai_django.breakers.memory.LocalBreakerStore",
             "redis": "flexiai_django.breakers.redis_store.RedisBreakerStore"}[backend]
    with override_settings(FLEXIAI={**THRESHOLD_2, "BREAKER_STORE": {"BACKEND": store}}):
        fake_upstream.set_fault("primary", status=500)
        counts = Counts()
        for _ in range(5):
            flexiai_django.chat(HELLO)
    assert counts.changed() == {
        'flexiai_requests_total{provider="secondary",tier="provider",outcome="ok"}': 5,
        'flexiai_provider_attempts_total{provider="primary",outcome="server_error"}': 2,
        'flexiai_provider_attempts_total{provider="secondary",outcome="ok"}': 5,
        'flexiai_provider_latency_seconds_count{provider="secondary"}': 5,
        'flexiai_breaker_transitions_total{breaker="llm:primary",from_state="closed",'
        'to_state="open"}': 1,
        'flexiai_breaker_rejections_total{breaker="llm:primary"}': 3,
    }


def test_the_cache_tier_is_a_fallback_with_no_live_provider(two, fake_upstream):
    flexiai_django.chat(HELLO)
    fake_upstream.set_fault("primary", status=500)
    fake_upstream.set_fault("secondary", status=500)
    counts = Counts()
    assert flexiai_django.chat(HELLO).tier == "cache"
    assert counts.changed() == {
        'flexiai_requests_total{provider="",tier="cache",outcome="ok"}': 1,
        'flexiai_fallback_total{tier="cache"}': 1,
        'flexiai_provider_attempts_total{provider="primary",outcome="server_error"}': 1,
        'flexiai_provider_attempts_total{provider="secondary",outcome="server_error"}': 1,
    }


def test_the_degraded_tier_and_no_tier_at_all_are_fallbacks_too(two, fake_upstream,
                                                                 counts):
    fake_upstream.set_fault("primary", status=500)
    fake_upstream.set_fault("secondary", reset=True)
    with override_settings(FLEXIAI={"DEGRADED_MESSAGE": "Back soon."}):
        flexiai_django.chat("one")
    with (override_settings(FLEXIAI={"DEGRADED_MESSAGE": None}),
          pytest.raises(flexiai_django.NoProviderAvailable)):
        flexiai_django.chat("two")
    assert counts.changed() == {
        'flexiai_requests_total{provider="",tier="degraded",outcome="ok"}': 1,
        'flexiai_requests_total{provider="",tier="none",outcome="unavailable"}': 1,
        'flexiai_fallback_total{tier="degraded"}': 1,
        'flexiai_fallback_total{tier="none"}': 1,
        'flexiai_provider_attempts_total{provider="primary",outcome="server_error"}': 2,
        'flexiai_provider_attempts_total{provider="secondary",outcome="connection_error"}': 2,
    }


def tokens_counted(before):
    now = flexiai_samples(REGISTRY.collect())
    return {k: v - before.get(k, 0) for k, v in now.items()
            if k.startswith("flexiai_tokens_total") and v != before.get(k, 0)}


def test_tokens_are_those_of_the_provider_that_served(two, fake_upstream):
    fake_upstream.set_fault("primary", status=500)
    before = flexiai_samples(REGISTRY.collect())
    result = flexiai_django.chat([{"role": "user", "content": "one two three"}])
    assert result.provider == "secondary"
    assert tokens_counted(before) == {
        'flexiai_tokens_total{provider="secondary",kind="prompt"}': 3,
        'flexiai_tokens_total{provider="secondary",kind="completion"}': 4,
    }


def test_each_provider_of_a_continued_stream_is_counted_its_own_tokens(make_provider,
                                                                        fake_upstream):
    make_provider("primary", kind="anthropic", priority=1)  # says its prompt's size first
    make_provider("secondary", priority=2)
    fake_upstream.set_reply_prefix("secondary", "primary: ")
    fake_upstream.set_fault("primary", stream_fail_after=2)
    before = flexiai_samples(REGISTRY.collect())
    stream = flexiai_django.stream([{"role": "user", "content": "one two three"}])
    assert "".join(stream) == "primary: one two three"
    continued = fake_upstream.requests("secondary")[-1].json["messages"]
    second_prompt = sum(len(m["content"].split()) for m in continued)
    assert tokens_counted(before) == {
        'flexiai_tokens_total{provider="primary",kind="prompt"}': 3,
        'flexiai_tokens_total{provider="secondary",kind="prompt"}': second_prompt,
        'flexiai_tokens_total{provider="secondary",kind="completion"}': 3,  # "one two three"
    }
    usage = stream.result.usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (3 + second_prompt, 3)


def test_a_request_error_ends_the_request_at_that_provider(two, fake_upstream, counts):
    fake_upstream.set_fault("primary", status=400)
    with pytest.raises(flexiai_django.BadRequest):
        flexiai_django.chat(HELLO)
    assert counts.changed() == {
        'flexiai_requests_total{provider="primary",tier="provider",outcome="bad_request"}': 1,
        'flexiai_provider_attempts_total{provider="primary",outcome="bad_request"}': 1,
    }


def test_a_stream_counts_when_it_ends_and_its_latency_is_the_first_chunk(two, fake_upstream,
                                                                        counts):
    fake_upstream.set_fault("primary", chunk_delay=0.1)
    latency = REGISTRY.get_sample_value("flexiai_provider_latency_seconds_sum",
                                        {"provider": "primary"}) or 0.0
    started = time.monotonic()
    stream = flexiai_django.stream([{"role": "user", "content": "a b c d e f"}])
    assert counts.changed() == {}
    "".join(stream)
    whole = time.monotonic() - started

    first_chunk = REGISTRY.get_sample_value("flexiai_provider_latency_seconds_sum",
                                            {"provider": "primary"}) - latency
    assert first_chunk < whole / 2
    assert counts.changed() == {
        'flexiai_requests_total{provider="primary",tier="provider",outcome="ok"}': 1,
        'flexiai_provider_attempts_total{provider="primary",outcome="ok"}': 1,
        'flexiai_provider_latency_seconds_count{provider="primary"}': 1,
    }


def test_a_stream_cut_after_its_start_is_an_interrupted_request(two, fake_upstream, counts):
    fake_upstream.set_fault("primary", stream_fail_after=2)
    off = {**settings.FLEXIAI, "CONTINUE_STREAMS": False}
    with override_settings(FLEXIAI=off), pytest.raises(flexiai_django.StreamInterrupted):
        "".join(flexiai_django.stream([{"role": "user", "content": "a b c d e f"}]))
    assert counts.changed() == {
        'flexiai_requests_total{provider="primary",tier="provider",outcome="interrupted"}': 1,
        'flexiai_provider_attempts_total{provider="primary",outcome="stream_interrupted"}': 1,
    }


def test_a_stream_continued_elsewhere_is_interrupted_for_one_and_answered_by_the_other(
        two, fake_upstream, counts):
    fake_upstream.set_fault("primary", stream_fail_after=2)
    "".join(flexiai_django.stream([{"role": "user", "content": "a b c d e f"}]))
    assert counts.changed() == {
        'flexiai_requests_total{provider="primary",tier="provider",outcome="interrupted"}': 1,
        'flexiai_provider_attempts_total{provider="primary",outcome="stream_interrupted"}': 1,
        'flexiai_requests_total{provider="secondary",tier="provider",outcome="ok"}': 1,
        'flexiai_provider_attempts_total{provider="secondary",outcome="ok"}': 1,
        'flexiai_provider_latency_seconds_count{provider="secondary"}': 1,
    }


def test_a_stream_the_caller_stops_reading_is_cancelled(two, counts):
    pieces = iter(flexiai_django.stream([{"role": "user", "content": "a b c d e f"}]))
    next(pieces)
    pieces.close()
    assert counts.changed() == {
        'flexiai_requests_total{provider="primary",tier="provider",outcome="cancelled"}': 1,
        'flexiai_provider_attempts_total{provider="primary",outcome="cancelled"}': 1,
    }


def test_a_stream_served_from_a_fallback_tier_counts_as_that_tier(two, fake_upstream):
    fake_upstream.set_fault("primary", status=500)
    fake_upstream.set_fault("secondary", status=500)
    counts = Counts()
    with override_settings(FLEXIAI={"DEGRADED_MESSAGE": "Back soon."}):
        assert "".join(flexiai_django.stream("new question")) == "Back soon."
    assert counts.changed() == {
        'flexiai_requests_total{provider="",tier="degraded",outcome="ok"}': 1,
        'flexiai_fallback_total{tier="degraded"}': 1,
        'flexiai_provider_attempts_total{provider="primary",outcome="server_error"}': 1,
        'flexiai_provider_attempts_total{provider="secondary",outcome="server_error"}': 1,
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_async_calls_are_counted_like_sync_ones(two, fake_upstream):
    fake_upstream.set_fault("primary", status=500)
    counts = Counts()
    await flexiai_django.achat(HELLO)
    stream = await flexiai_django.astream(HELLO)
    assert "".join([piece async for piece in stream]) == "secondary: hello"
    await cache_tier.drain()
    assert counts.changed() == {
        'flexiai_requests_total{provider="secondary",tier="provider",outcome="ok"}': 2,
        'flexiai_provider_attempts_total{provider="primary",outcome="server_error"}': 2,
        'flexiai_provider_attempts_total{provider="secondary",outcome="ok"}': 2,
        'flexiai_provider_latency_seconds_count{provider="secondary"}': 2,
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_call_cancelled_while_a_provider_works_is_cancelled(two, fake_upstream):
    fake_upstream.set_fault("primary", delay=5)
    counts = Counts()
    task = asyncio.create_task(flexiai_django.achat(HELLO))
    while fake_upstream.hits("primary") == 0:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert counts.changed() == {
        'flexiai_requests_total{provider="primary",tier="provider",outcome="cancelled"}': 1,
        'flexiai_provider_attempts_total{provider="primary",outcome="cancelled"}': 1,
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_stream_whose_client_goes_away_mid_way_is_cancelled(two, fake_upstream):
    """An SSE client disconnecting cancels the task reading the stream (Django's ASGI handler)."""
    fake_upstream.set_fault("primary", chunk_delay=5)  # the first piece, then a long pause
    counts = Counts()
    stream = await flexiai_django.astream(HELLO)
    first = asyncio.Event()

    async def client() -> None:
        async for _ in stream:
            first.set()

    task = asyncio.create_task(client())
    await asyncio.wait_for(first.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert counts.changed() == {
        'flexiai_requests_total{provider="primary",tier="provider",outcome="cancelled"}': 1,
        'flexiai_provider_attempts_total{provider="primary",outcome="cancelled"}': 1,
    }


def test_an_error_kind_outside_the_taxonomy_is_reported_as_provider_error():
    assert metrics.outcome_of("timeout") == "timeout"
    assert metrics.outcome_of("boom: https://api.example/v1?key=sk-123") == "provider_error"


# -- breakers for any outbound call ------------------------------------------------------------

def test_a_generic_breaker_counts_its_rejections_and_transitions(counts):
    payments = breaker("payments", failure_threshold=1, jitter=0)
    with pytest.raises(ZeroDivisionError):
        payments.call(lambda: 1 / 0)
    with pytest.raises(flexiai_django.CircuitOpen):
        payments.call(lambda: 1)
    assert counts.changed() == {
        'flexiai_breaker_transitions_total{breaker="payments",from_state="closed",'
        'to_state="open"}': 1,
        'flexiai_breaker_rejections_total{breaker="payments"}': 1,
    }


def test_a_transition_is_counted_by_the_worker_that_made_it_not_by_those_told_of_it(counts):
    """Two stores on one Redis are two workers; the second learns by broadcast and re-read."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    maker, told = (RedisBreakerStore(url=os.environ["REDIS_URL"], key_prefix=prefix)
                   for _ in range(2))
    cfg = BreakerConfig(failure_threshold=1)
    opened = maker.record("svc", cfg, success=False, probe=False, error="timeout")

    assert told.apply_remote("svc", opened)
    told.refresh()

    assert told.snapshot("svc").state is State.OPEN
    assert counts.changed() == {
        'flexiai_breaker_transitions_total{breaker="svc",from_state="closed",'
        'to_state="open"}': 1,
    }
    maker.clear()


def test_a_version_bump_without_a_state_change_is_not_a_transition(counts):
    b = breaker("svc", failure_threshold=3)
    with pytest.raises(ZeroDivisionError):
        b.call(lambda: 1 / 0)
    b.call(lambda: 1)
    b.reset()
    assert counts.changed() == {}


# -- GET /metrics --------------------------------------------------------------------------------

def scrape(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return flexiai_samples(text_string_to_metric_families(response.content.decode()))


def test_metrics_shows_each_breaker_state_one_hot_including_providers_never_called(
        client, two):
    breaker("llm:primary").force_open()
    shown = scrape(client)
    assert {s: shown[sample_key("flexiai_breaker_state", {"breaker": "llm:primary",
                                                          "state": s})] for s in State} == {
        State.CLOSED: 0, State.OPEN: 0, State.HALF_OPEN: 0, State.FORCED_OPEN: 1,
        State.DISABLED: 0}
    assert shown['flexiai_breaker_state{breaker="llm:secondary",state="closed"}'] == 1
    assert shown["flexiai_redis_connected{}"] == 1


def test_metrics_follows_the_shared_store_not_what_this_process_saw(client, two):
    other_worker = RedisBreakerStore(url=os.environ["REDIS_URL"])
    other_worker.force("llm:secondary", State.DISABLED)
    shown = scrape(client)
    assert shown['flexiai_breaker_state{breaker="llm:secondary",state="disabled"}'] == 1
    assert shown['flexiai_breaker_state{breaker="llm:secondary",state="closed"}'] == 0


def test_metrics_says_when_the_shared_store_lost_redis(client, two):
    with RedisServer() as own:
        store = {"BACKEND": "flexiai_django.breakers.redis_store.RedisBreakerStore",
                 "OPTIONS": {"url": own.url, "retry_seconds": 30}}
        with override_settings(FLEXIAI={"BREAKER_STORE": store}):
            assert scrape(client)["flexiai_redis_connected{}"] == 1
            own.kill()
            assert scrape(client)["flexiai_redis_connected{}"] == 0
            own.start()
            assert scrape(client)["flexiai_redis_connected{}"] == 1


def test_metrics_label_values_are_names_tiers_states_and_outcomes_never_secrets(
        client, make_provider, fake_upstream):
    secret = "sk-live-" + uuid.uuid4().hex
    make_provider("primary", priority=1, api_key=secret)
    make_provider("secondary", priority=2)
    fake_upstream.set_fault("primary", status=500)
    flexiai_django.chat(HELLO)
    fake_upstream.set_fault("primary", reset=True)
    flexiai_django.chat(HELLO)
    body = client.get("/metrics").content.decode()

    assert secret not in body and fake_upstream.url not in body
    closed_sets = {
        "tier": set(metrics.TIERS), "kind": set(metrics.TOKEN_KINDS),
        "state": {s.value for s in State},
        "from_state": {s.value for s in State}, "to_state": {s.value for s in State},
        "outcome": metrics.ERROR_KINDS | {"ok", "unavailable", "interrupted", "cancelled",
                                          "error"},
        "action": set(ACTIONS), "reason": set(REASONS),
    }
    name = re.compile(r"^[\w.:-]*$")  # provider slugs, breaker names: no URLs, no spaces
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            for label, value in s.labels.items() if s.name.startswith("flexiai_") else ():
                if label == "tier" and s.name.startswith("flexiai_capacity_"):
                    assert name.match(value), (s.name, value)  # a provider tier's label
                elif label in closed_sets:
                    assert value in closed_sets[label], (s.name, label, value)
                elif label != "le":
                    assert label in {"provider", "breaker"} and name.match(value), (s.name,
                                                                                    value)


def test_metrics_only_answers_get(client):
    assert client.post("/metrics").status_code == 405


# -- deploy/: the dashboard and the alert rules use what the app exports ------------------------

NAME = re.compile(r"\bflexiai_[a-z_]+")
SELECTOR = re.compile(r"\b(flexiai_[a-z_]+)\s*\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_]+)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
TARGET_LABELS = {"instance", "job"}  # added by Prometheus to every scraped series


def dashboard_exprs():
    dashboard = json.loads((ROOT / "deploy/grafana/flexiai-dashboard.json").read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]


def alert_rules():
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    return [rule for group in rules["groups"] for rule in group["rules"]]


def check_expr(expr):
    """Every flexiai name is exported, and every label it matches or groups by exists."""
    exported = metrics.samples()
    names = set(NAME.findall(expr))
    assert names, f"no flexiai metric in {expr!r}"
    assert names <= set(exported), f"not exported: {names - set(exported)} in {expr!r}"
    for name, matchers in SELECTOR.findall(expr):
        assert set(MATCHER.findall(matchers)) <= exported[name], (name, matchers)
    known = set().union(*(exported[n] for n in names)) | TARGET_LABELS
    for grouping in GROUPING.findall(expr):
        labels = {label.strip() for label in grouping.split(",") if label.strip()}
        assert labels <= known, (labels, expr)


def test_the_dashboard_uses_only_exported_metrics_and_labels():
    exprs = dashboard_exprs()
    assert len(exprs) >= 6
    for expr in exprs:
        check_expr(expr)


def test_the_alert_rules_cover_the_outages_and_use_only_exported_metrics():
    rules = alert_rules()
    assert {r["alert"] for r in rules} >= {
        "FlexiAIAllProvidersDown", "FlexiAIBreakerOpen", "FlexiAIRedisDisconnected",
        "FlexiAIHighErrorRate"}
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert rule["annotations"]["summary"]
        check_expr(rule["expr"])


def test_the_drift_check_catches_a_renamed_metric_or_label():
    with pytest.raises(AssertionError):
        check_expr('sum(rate(flexiai_request_total[5m]))')
    with pytest.raises(AssertionError):
        check_expr('flexiai_breaker_state{provider="x"}')
    with pytest.raises(AssertionError):
        check_expr('sum by (provider) (flexiai_breaker_state)')


# -- deploy/gunicorn.conf.py: the multiprocess directory -----------------------------------------

def gunicorn_conf():
    return runpy.run_path(str(ROOT / "deploy/gunicorn.conf.py"))


ARBITER = SimpleNamespace(reexec_pid=0, master_pid=0)  # a master alone (no USR2 upgrade)


def test_gunicorn_starts_with_no_stale_metrics_and_drops_a_dead_workers_live_gauges(
        tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    for name in ("counter_41.db", "gauge_livemostrecent_41.db", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    conf = gunicorn_conf()

    conf["on_starting"](ARBITER)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]

    for name in ("counter_42.db", "histogram_42.db", "gauge_livemostrecent_42.db",
                 "gauge_livemostrecent_43.db"):
        (tmp_path / name).write_bytes(b"")
    conf["child_exit"](None, SimpleNamespace(pid=42))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "counter_42.db", "gauge_livemostrecent_43.db", "histogram_42.db", "notes.txt"]


def test_gunicorn_without_a_metrics_dir_uses_a_private_one_and_removes_it(monkeypatch):
    for name in ("PROMETHEUS_MULTIPROC_DIR", "FLEXIAI_PRIVATE_PROMETHEUS_DIR"):
        monkeypatch.setenv(name, "restored after the test")
        monkeypatch.delenv(name)
    conf = gunicorn_conf()
    metrics_dir = conf["METRICS_DIR"]

    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(metrics_dir)
    assert metrics_dir.name.startswith("flexiai-prometheus-")  # mkdtemp: not predictable
    assert stat.S_IMODE(metrics_dir.stat().st_mode) == 0o700
    conf["on_starting"](ARBITER)
    assert metrics_dir.is_dir()
    conf["on_exit"](ARBITER)
    assert not metrics_dir.exists()
