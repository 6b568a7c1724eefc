"""Sessions on real gunicorn (uvicorn) workers sharing Redis: one session's requests all
reach its pinned provider whichever worker serves them; when that provider fails the
session moves once and stays; an idle session expires."""

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis

from flexiai_django.breakers.redis_store import RedisBreakerStore
from flexiai_django.breakers.state import State
from flexiai_django.session_store import RedisSessions

from .conftest import BREAKER, site_env, start

pytestmark = [pytest.mark.slow, pytest.mark.django_db]
TTL = 2
HI = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def site(seeded):
    env = site_env(seeded, SESSION_TTL_SECONDS=TTL)
    server = start("uvicorn", seeded, workers=4, FLEXIAI_JSON=env["FLEXIAI_JSON"])
    yield server
    server.stop()


def burst(url, session_id, total, threads=8):
    """``total`` requests of the session from ``threads`` threads, each on its own
    keep-alive connection (reopened every 10 requests so every worker gets some)."""
    mine, opened = threading.local(), []

    def one(i):
        if getattr(mine, "client", None) is None or i % 10 == 0:
            if getattr(mine, "client", None) is not None:
                mine.client.close()
            mine.client = httpx.Client(timeout=15)
            opened.append(mine.client)
        response = mine.client.post(f"{url}/v1/chat/completions", json=HI,
                                    headers={"X-FlexiAI-Session": session_id})
        return (response.status_code, response.headers.get("x-flexiai-provider"),
                response.headers.get("x-flexiai-worker"), response.headers.get(
                    "x-flexiai-session"))

    try:
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(one, range(total)))
    finally:
        for client in opened:
            client.close()


def test_a_session_stays_on_its_provider_moves_once_and_expires(site, fake_upstream):
    url = os.environ["REDIS_URL"]
    breakers = RedisBreakerStore(url=url)
    # Created while demo-primary is forced open: pinned to the next, demo-secondary.
    breakers.force(BREAKER, State.FORCED_OPEN)
    created = httpx.post(f"{site.url}/v1/sessions", json={"id": "conv-1"}, timeout=10)
    assert created.status_code == 201, created.text
    assert created.json()["provider"] == "demo-secondary"
    breakers.force(BREAKER, State.CLOSED)  # the primary serves again; the session stays

    primary, secondary = fake_upstream.hits("demo-primary"), fake_upstream.hits(
        "demo-secondary")
    started = time.monotonic()
    answers = burst(site.url, "conv-1", 200)
    pinned_seconds = time.monotonic() - started
    assert {a[:2] for a in answers} == {(200, "demo-secondary")}
    assert {a[3] for a in answers} == {"conv-1"}
    assert len({a[2] for a in answers}) == 4  # every worker served some
    assert fake_upstream.hits("demo-secondary") - secondary == 200
    assert fake_upstream.hits("demo-primary") == primary

    # The pinned provider fails: the session moves once, to the next choice, and stays.
    fake_upstream.set_fault("demo-secondary", status=500)
    secondary = fake_upstream.hits("demo-secondary")
    moved = burst(site.url, "conv-1", 40)
    assert {a[:2] for a in moved} == {(200, "demo-primary")}
    failed_calls = fake_upstream.hits("demo-secondary") - secondary
    assert 1 <= failed_calls <= 8  # only requests already under way saw the old pin
    fake_upstream.set_fault("demo-secondary")  # recovered
    after = burst(site.url, "conv-1", 40)
    assert {a[:2] for a in after} == {(200, "demo-primary")}
    assert fake_upstream.hits("demo-secondary") - secondary == failed_calls
    session = httpx.get(f"{site.url}/v1/sessions/conv-1", timeout=10).json()
    assert session["provider"] == "demo-primary"

    # Left idle, it expires deployment-wide (Redis drops the key after the TTL).
    client = redis.Redis.from_url(url)
    key = RedisSessions().key_name("anonymous", "conv-1")
    idle_from = time.monotonic()
    while client.exists(key) and time.monotonic() - idle_from < TTL + 10:
        time.sleep(0.05)
    idle = time.monotonic() - idle_from
    assert TTL - 0.5 <= idle <= TTL + 10
    gone = httpx.get(f"{site.url}/v1/sessions/conv-1", timeout=10)
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "session_not_found"
    print(f"200 pinned requests in {pinned_seconds:.2f}s; {failed_calls} calls to the failed "
          f"pin before the move; idle session gone after {idle:.2f}s")
