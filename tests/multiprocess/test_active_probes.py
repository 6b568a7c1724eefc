"""A primary that flapped is back within seconds, probed once per interval by the deployment.

Real gunicorn sync workers share one Redis; the fake upstream's primary answers 503 for
``DOWN_FOR`` seconds after the fault is armed, then heals. Requests open its breaker
(OPEN_SECONDS 60: without active probing it would stay out of use for a minute).
"""

import json
import os
import time

import openai
import pytest

from flexiai_django.breakers.redis_store import RedisBreakerStore
from flexiai_django.breakers.state import State

from .conftest import BREAKER, FLEXIAI, breaker_views, is_probe, sdk_answer_from, start

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

WORKERS = 4
INTERVAL = 0.5
DOWN_FOR = 3.0
PRIMARY = "demo-primary"


@pytest.fixture(scope="module")
def site(seeded):
    flexiai = {**FLEXIAI, "FAILURE_THRESHOLD": 3, "OPEN_SECONDS": 60,
               "ACTIVE_PROBE_SECONDS": INTERVAL}
    server = start("gunicorn-sync", seeded, workers=WORKERS, FLEXIAI_JSON=json.dumps(flexiai))
    try:
        breaker_views(server.url, WORKERS)  # every worker has its store, listener and prober
        yield server
    finally:
        server.stop()




def test_a_recovered_primary_serves_again_within_an_interval_and_is_probed_once_per_interval(
        site, fake_upstream):
    sdk = openai.OpenAI(base_url=f"{site.url}/v1", api_key="not-needed", max_retries=0)
    store = RedisBreakerStore(url=os.environ["REDIS_URL"])
    store.force(BREAKER, State.CLOSED)
    seen = len(fake_upstream.requests(PRIMARY))
    fake_upstream.set_fault(PRIMARY, status=503, down_for=DOWN_FOR)
    healthy_at = time.monotonic() + DOWN_FOR
    try:
        while store.get(BREAKER).state is not State.OPEN:
            assert time.monotonic() < healthy_at, "requests did not open the breaker"
            sdk_answer_from(sdk)  # answered all along (by the secondary once the primary fails)
        opened_at = time.monotonic()

        while True:
            if sdk_answer_from(sdk) == PRIMARY:
                break
            assert time.monotonic() - healthy_at < 15, f"never back: {store.get(BREAKER)}"
        back_after = time.monotonic() - healthy_at
    finally:
        fake_upstream.clear_faults()
    probes = [r for r in fake_upstream.requests(PRIMARY)[seen:] if is_probe(r)]
    probing = healthy_at - opened_at
    print(f"\nprimary back {back_after:.2f} s after it healed; {len(probes)} probes "
          f"in {probing:.1f} s open")
    assert back_after <= INTERVAL + 2.0, site.output()[-2000:]
    assert 1 <= len(probes) <= DOWN_FOR / INTERVAL + 2  # not one per worker
    state = store.get(BREAKER)
    assert (state.state, state.last_probe, state.openings) == (State.CLOSED, "ok", 0)
    assert 1 <= state.active_probes <= len(probes)
