"""A warming primary on real workers: no traffic while it loads, one warm-up probe per
interval for the whole deployment, and traffic within moments of its first answer.

Real gunicorn sync workers share one Redis; the fake upstream's primary answers 503 for
``DOWN_FOR`` seconds (its model is loading), then answers.
"""

import json
import os
import time

import openai
import pytest

from flexiai_django.breakers.redis_store import RedisBreakerStore
from flexiai_django.breakers.state import State

from .conftest import (
    BREAKER,
    FLEXIAI,
    breaker_views,
    edit_provider,
    is_probe,
    sdk_answer_from,
    start,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

WORKERS = 4
INTERVAL = 0.5
DOWN_FOR = 3.0
PRIMARY = "demo-primary"


@pytest.fixture
def site(seeded, fake_upstream):
    """Started after the test's fresh fake upstream, with the primary loading already."""
    fake_upstream.set_fault(PRIMARY, status=503)
    edit_provider(seeded, PRIMARY, warming=True)
    RedisBreakerStore(url=os.environ["REDIS_URL"]).force(BREAKER, State.CLOSED)
    flexiai = {**FLEXIAI, "WARMUP_PROBE_SECONDS": INTERVAL}
    server = start("gunicorn-sync", seeded, workers=WORKERS, FLEXIAI_JSON=json.dumps(flexiai))
    try:
        breaker_views(server.url, WORKERS)  # every worker has its store and probers
        yield server
    finally:
        server.stop()




def test_a_warming_primary_gets_only_probes_until_it_answers_then_traffic(site, fake_upstream):
    sdk = openai.OpenAI(base_url=f"{site.url}/v1", api_key="not-needed", max_retries=0)
    seen = len(fake_upstream.requests(PRIMARY))
    fake_upstream.set_fault(PRIMARY, status=503, down_for=DOWN_FOR)  # ready in 3 s
    ready_at = time.monotonic() + DOWN_FOR
    served_while_loading = []
    try:
        while time.monotonic() < ready_at - 0.2:
            served_while_loading.append(sdk_answer_from(sdk))
        while sdk_answer_from(sdk) != PRIMARY:
            assert time.monotonic() - ready_at < 10, [
                x for x in site.output().splitlines() if '"event":"request"' not in x][-30:]
        back_after = time.monotonic() - ready_at
    finally:
        fake_upstream.clear_faults()
    calls = fake_upstream.requests(PRIMARY)[seen:]
    probes = [r for r in calls if is_probe(r)]
    print(f"\n{len(served_while_loading)} requests while loading, {len(probes)} warm-up "
          f"probes; primary serving {back_after:.2f} s after it could answer")
    assert served_while_loading and PRIMARY not in served_while_loading
    assert not [r for r in calls[:-1] if not is_probe(r)]  # nothing but probes before
    assert 2 <= len(probes) <= DOWN_FOR / INTERVAL + 2     # not one per worker
    assert back_after <= INTERVAL + 2.0
