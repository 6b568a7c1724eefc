"""/metrics under gunicorn with two uvicorn workers and deploy/gunicorn.conf.py.

Each worker writes its own metric files; whichever worker answers a scrape shows the
figures of the whole deployment: requests added up over both, each breaker transition
once, breaker and Redis gauges read from the shared store.
"""

import json
import os
import signal
import time
import uuid

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from flexiai_django.testing.redis_server import RedisServer

from .conftest import FLEXIAI, GUNICORN_CONF, chat, start

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

PROVIDERS = ("demo-primary", "demo-secondary", "demo-local")
COUNTED = ("flexiai_requests_total", "flexiai_provider_attempts_total", "flexiai_fallback_total",
           "flexiai_breaker_rejections_total", "flexiai_breaker_transitions_total",
           "flexiai_provider_latency_seconds_count")
DEGRADED = "Busy, please try again."


def start_site(seeded, metrics_dir, **env):
    flexiai = {**FLEXIAI, "CACHE_ENABLED": True, "DEGRADED_MESSAGE": DEGRADED}
    return start("uvicorn", seeded, workers=2, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
                 GUNICORN_CMD_ARGS=f"--config {GUNICORN_CONF}", FLEXIAI_JSON=json.dumps(flexiai),
                 **env)


@pytest.fixture
def site(seeded, tmp_path, fake_upstream):
    server = start_site(seeded, tmp_path / "prometheus")
    server.metrics_dir = tmp_path / "prometheus"
    yield server
    server.stop()


def key(name, labels):
    """``name{a="1",b="2"}`` with labels sorted: the multiprocess collector sorts them."""
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def canonical(samples):
    """The same keys written in any label order (as the expectations below are)."""
    parsed = text_string_to_metric_families("\n".join(f"{k} {v}" for k, v in samples.items()))
    return {key(s.name, s.labels): s.value for family in parsed for s in family.samples}


def parse(text):
    return {key(s.name, s.labels): s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name.startswith("flexiai_")}


def counted(samples):
    return {k: v for k, v in samples.items() if k.split("{")[0] in COUNTED and v}


def file_samples(path):
    """What one worker process recorded (one of the files the exporter adds up)."""
    return {key(s.name, s.labels): s.value
            for family in MultiProcessCollector.merge([str(path)]) for s in family.samples}


def scrape_each_worker(url, workers=2, tries=400):
    """/metrics as each worker renders it (fresh connections until all have answered)."""
    seen = {}
    with httpx.Client(timeout=10) as client:
        for _ in range(tries):
            response = client.get(f"{url}/metrics", headers={"connection": "close"})
            assert response.status_code == 200
            seen[response.headers["X-FlexiAI-Worker"]] = parse(response.text)
            if len(seen) >= workers:
                return seen
    raise AssertionError(f"only {sorted(seen)} answered /metrics")


def one_hot(samples, breaker):
    return {state for state in ("closed", "open", "half_open", "forced_open", "disabled")
            if samples[key("flexiai_breaker_state", {"breaker": breaker, "state": state})] == 1}


class Traffic:
    """Sequential requests that check who answered and remember which worker served them."""

    def __init__(self, url):
        self.url = url
        self.run = uuid.uuid4().hex[:8]  # no answer cached by an earlier test can match
        self.sent = 0

    def ask(self, text, tier, provider):
        status, body = chat(self.url, f"{self.run} {text}")
        assert status == 200, body
        assert (body["tier"], body["provider"]) == (tier, provider), body
        self.sent += 1
        return body["worker_id"]


def test_two_workers_report_the_deployments_figures_once(site, fake_upstream):
    traffic = Traffic(site.url)
    # Healthy: the primary answers (and its answers are cached).
    for i in range(6):
        traffic.ask(f"a{i}", "provider", "demo-primary")

    # The primary dies: 5 failovers open its breaker, then it is skipped. Go on until both
    # workers have served with the breaker open, so both have refused it.
    fake_upstream.set_fault("demo-primary", status=500)
    after_open, phase_b = set(), 0
    while phase_b < 20 or len(after_open) < 2:
        worker = traffic.ask(f"b{phase_b}", "provider", "demo-secondary")
        phase_b += 1
        if phase_b > 5:
            after_open.add(worker)
        assert phase_b < 200
    assert fake_upstream.hits("demo-primary") == 6 + 5

    # Every provider dies: 5 requests open the other two breakers; new questions get the
    # degraded message, questions answered before come from the cache.
    fake_upstream.set_fault("demo-secondary", status=500)
    fake_upstream.set_fault("demo-local", status=500)
    for i in range(5):
        traffic.ask(f"c{i}", "degraded", None)
    for i in range(5):
        traffic.ask(f"a{i}", "cache", "demo-primary")
    for i in range(5):
        traffic.ask(f"d{i}", "degraded", None)

    expected = canonical({
        'flexiai_requests_total{provider="demo-primary",tier="provider",outcome="ok"}': 6,
        'flexiai_requests_total{provider="demo-secondary",tier="provider",outcome="ok"}': phase_b,
        'flexiai_requests_total{provider="",tier="degraded",outcome="ok"}': 10,
        'flexiai_requests_total{provider="",tier="cache",outcome="ok"}': 5,
        'flexiai_provider_attempts_total{provider="demo-primary",outcome="ok"}': 6,
        'flexiai_provider_attempts_total{provider="demo-primary",outcome="server_error"}': 5,
        'flexiai_provider_attempts_total{provider="demo-secondary",outcome="ok"}': phase_b,
        'flexiai_provider_attempts_total{provider="demo-secondary",outcome="server_error"}': 5,
        'flexiai_provider_attempts_total{provider="demo-local",outcome="server_error"}': 5,
        'flexiai_provider_latency_seconds_count{provider="demo-primary"}': 6,
        'flexiai_provider_latency_seconds_count{provider="demo-secondary"}': phase_b,
        'flexiai_fallback_total{tier="degraded"}': 10,
        'flexiai_fallback_total{tier="cache"}': 5,
        'flexiai_breaker_rejections_total{breaker="llm:demo-primary"}': phase_b - 5 + 15,
        'flexiai_breaker_rejections_total{breaker="llm:demo-secondary"}': 10,
        'flexiai_breaker_rejections_total{breaker="llm:demo-local"}': 10,
        **{f'flexiai_breaker_transitions_total{{breaker="llm:{p}",from_state="closed",'
           f'to_state="open"}}': 1 for p in PROVIDERS},
    })
    scrapes = scrape_each_worker(site.url)
    for samples in scrapes.values():
        assert counted(samples) == expected
        assert {p: one_hot(samples, f"llm:{p}") for p in PROVIDERS} == {
            p: {"open"} for p in PROVIDERS}
        assert samples["flexiai_providers_available{}"] == 0
        assert samples["flexiai_redis_connected{}"] == 1
    requests = sum(v for k, v in expected.items() if k.startswith("flexiai_requests_total"))
    assert requests == traffic.sent

    # Each worker refused the dead primary itself, yet its one transition is in one file.
    per_worker = {pid: file_samples(site.metrics_dir / f"counter_{pid}.db")
                  for pid in site.worker_pids()}
    refused = {pid: c.get(key("flexiai_breaker_rejections_total",
                              {"breaker": "llm:demo-primary"}), 0)
               for pid, c in per_worker.items()}
    opened = {pid: sum(v for k, v in c.items() if k.startswith("flexiai_breaker_transitions"))
              for pid, c in per_worker.items()}
    assert all(refused.values()) and sum(opened.values()) == 3
    print(f"\n{traffic.sent} requests, {phase_b} of them in the primary's outage; "
          f"per worker: primary refused {refused}, transitions made {opened}; "
          f"/metrics from {sorted(scrapes)} both show {len(expected)} identical counts, "
          f"3 transitions, breakers open, providers_available 0, redis_connected 1")

    # Both workers wrote their own files; a killed worker's live gauges go with it, its
    # counts stay in the sums.
    metrics_dir = site.metrics_dir
    dead = site.worker_pids()[0]
    os.kill(dead, signal.SIGKILL)
    wait_for_replacement(site, dead)
    assert not (metrics_dir / f"gauge_livemostrecent_{dead}.db").exists()
    assert (metrics_dir / f"counter_{dead}.db").exists()
    for samples in scrape_each_worker(site.url).values():
        assert counted(samples) == expected
        assert one_hot(samples, "llm:demo-primary") == {"open"}


def wait_for_replacement(site, dead, timeout=60.0):
    """Until gunicorn has reaped ``dead`` and its new worker answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = site.worker_pids()
        if len(pids) == 2 and dead not in pids:
            answered = set()
            for _ in range(50):
                try:  # the new worker may still be importing Django on a busy machine
                    body = httpx.get(f"{site.url}/health/live",
                                     headers={"connection": "close"}, timeout=5).json()
                except httpx.TimeoutException:
                    continue
                answered.add(int(body["worker_id"].rsplit(":", 1)[1]))
                if answered == set(pids):
                    return
        time.sleep(0.05)
    raise AssertionError(f"worker {dead} was not replaced within {timeout}s")


def test_the_redis_gauge_follows_redis_in_every_worker(seeded, tmp_path, fake_upstream):
    with RedisServer() as own_redis:
        site = start_site(seeded, tmp_path / "prometheus", REDIS_URL=own_redis.url)
        try:
            for samples in scrape_each_worker(site.url).values():
                assert samples["flexiai_redis_connected{}"] == 1
                assert samples["flexiai_providers_available{}"] == 3
                assert one_hot(samples, "llm:demo-local") == {"closed"}

            own_redis.kill()
            for samples in scrape_each_worker(site.url).values():
                assert samples["flexiai_redis_connected{}"] == 0

            own_redis.start()
            for samples in scrape_each_worker(site.url).values():
                assert samples["flexiai_redis_connected{}"] == 1
        finally:
            site.stop()
