"""A provider's Retry-After, heard by one worker, holds every worker back (real gunicorn
workers, the openai SDK as the client)."""

import os
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from flexiai_django.breakers.redis_store import RedisBreakerStore
from flexiai_django.breakers.state import State

from .conftest import BREAKER, start, wait_until_every_worker

pytestmark = [pytest.mark.slow, pytest.mark.django_db]
HI = [{"role": "user", "content": "say hi to the gateway"}]
ECHO = "echo: say hi to the gateway"


@pytest.fixture(scope="module")
def site(seeded):
    """A site of its own: each test empties the shared Redis (channel groups included), so
    only workers that join after that hear each other's broadcasts at once."""
    server = start("uvicorn", seeded, workers=2)
    yield server
    server.stop()


def test_a_retry_after_keeps_every_worker_off_the_provider_that_asked(site, fake_upstream):
    store = RedisBreakerStore(url=os.environ["REDIS_URL"])
    version = store.force(BREAKER, State.CLOSED).version
    client = openai.OpenAI(base_url=f"{site.url}/v1", api_key="not-needed", max_retries=0,
                           default_headers={"connection": "close"})  # spread over workers

    def ask(_=None):
        raw = client.chat.completions.with_raw_response.create(messages=HI, model="auto")
        reply = raw.parse()
        return (raw.headers["x-flexiai-worker"], raw.headers["x-flexiai-provider"],
                reply.choices[0].message.content, reply.choices[0].finish_reason)

    try:
        warm = {ask() for _ in range(20)}
        assert {w[1:] for w in warm} == {("demo-primary", ECHO, "stop")}
        # Both workers listen for broadcasts and hold a clean, fresh snapshot: they admit
        # calls to the primary without asking Redis.
        wait_until_every_worker(site.url, 2, lambda view: view["sync_enabled"] and (
            view["breakers"][BREAKER]["local"] == {"state": "closed", "version": version}))

        fake_upstream.set_fault("demo-primary", status=429, retry_after=5, times=1)
        primary_hits = fake_upstream.hits("demo-primary")
        started = time.monotonic()
        first = ask()
        assert first[1:] == ("demo-secondary", ECHO, "stop")  # beyond the cap: failed over
        assert fake_upstream.hits("demo-primary") == primary_hits + 1

        answers = []
        with ThreadPoolExecutor(2) as pool:
            while time.monotonic() - started < 4.0:
                answers += pool.map(ask, range(4))
                time.sleep(0.02)

        assert fake_upstream.hits("demo-primary") == primary_hits + 1
        assert {a[1:] for a in answers} == {("demo-secondary", ECHO, "stop")}
        assert len({a[0] for a in answers}) == 2, "both workers answered during the cooldown"
        print(f"\n{len(answers)} requests over both workers in the 4 s after the 429, "
              "none to the primary")

        until = store.get(BREAKER).cooldown_until
        assert until is not None
        while time.time() < until:  # it heals: once the 5 s are over, the primary serves
            time.sleep(0.05)
        assert ask()[1] == "demo-primary"
    finally:
        store.force(BREAKER, State.CLOSED)
