"""Overflow routing and in-flight leases on real gunicorn (uvicorn) workers sharing Redis.

The large tier (demo-primary, capacity 2) takes new requests until two are in flight
(held there by a slow fake upstream), then the small tier (demo-secondary) does, and the
large one again once they are done. A worker SIGKILLed mid-request frees its slot within
INFLIGHT_LEASE_SECONDS (2 here): nothing renews it any more.
"""

import os
import signal
import threading
import time

import httpx
import pytest
import redis

from flexiai_django.inflight import InflightSlots

from .conftest import edit_provider, site_env, start

pytestmark = [pytest.mark.slow, pytest.mark.django_db]
LEASE = 2
HI = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
LARGE, SMALL = "demo-primary", "demo-secondary"


@pytest.fixture(scope="module")
def site(seeded):
    edit_provider(seeded, LARGE, tier="large", capacity=2)
    edit_provider(seeded, SMALL, tier="small", capacity=10)
    env = site_env(seeded, ROUTING={"auto": "overflow"}, INFLIGHT_LEASE_SECONDS=LEASE)
    server = start("uvicorn", seeded, workers=2, FLEXIAI_JSON=env["FLEXIAI_JSON"])
    yield server
    server.stop()


@pytest.fixture
def slots():
    made = InflightSlots(url=os.environ["REDIS_URL"])  # the site's keys (prefix "flexiai")
    made.clear()
    yield made
    made.clear()


def ask(url, timeout=30.0):
    try:
        response = httpx.post(f"{url}/v1/chat/completions", json=HI, timeout=timeout,
                              headers={"connection": "close"})
    except httpx.TransportError as exc:
        return 0, type(exc).__name__
    return response.status_code, response.headers.get("x-flexiai-provider")


def in_background(url):
    answers = []
    thread = threading.Thread(target=lambda: answers.append(ask(url)), daemon=True)
    thread.start()
    return thread, answers


def wait_for(check, within, what):
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"{what} not within {within} s"
        time.sleep(0.02)
    return time.monotonic()


def test_new_requests_overflow_to_the_small_tier_exactly_at_capacity_and_come_back(
        site, fake_upstream, slots):
    large = lambda: slots.counts([LARGE])[LARGE]  # noqa: E731
    fake_upstream.set_fault(LARGE, first_token_delay=4.0, times=2)
    first, first_answer = in_background(site.url)
    wait_for(lambda: large() == 1, 10, "the first slow request")
    # One of two in flight: the large tier is not full, the next request goes there too.
    second, second_answer = in_background(site.url)
    wait_for(lambda: large() == 2, 10, "the second slow request")
    # Two of two: full. New requests overflow to the small tier, answered at once.
    assert [ask(site.url) for _ in range(3)] == [(200, SMALL)] * 3
    first.join(15)
    second.join(15)
    assert first_answer == second_answer == [(200, LARGE)]
    wait_for(lambda: large() == 0, 5, "the slow requests' slots freed")
    assert ask(site.url) == (200, LARGE)  # back to the large tier
    fake_upstream.clear_faults()


def test_a_killed_workers_slot_is_freed_within_the_lease(site, fake_upstream, slots):
    fake_upstream.set_fault(LARGE, first_token_delay=30.0, times=1)
    request, answers = in_background(site.url)
    taken = wait_for(lambda: slots.counts([LARGE])[LARGE] == 1, 10, "the slot")
    # Renewed by its worker: it outlives its first lease.
    time.sleep(LEASE + 0.5)
    assert slots.counts([LARGE])[LARGE] == 1, "the holding worker did not renew its slot"
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    (member,) = client.zrange(f"flexiai:inflight:{LARGE}", 0, -1)
    holder = int(member.decode().split(":")[1])  # host:pid:instance:n
    assert holder in site.worker_pids()
    killed = time.monotonic()
    os.kill(holder, signal.SIGKILL)
    freed = wait_for(lambda: slots.counts([LARGE])[LARGE] == 0, LEASE + 2, "the freed slot")
    print(f"\nslot held {killed - taken:.1f} s by a live worker; freed "
          f"{freed - killed:.2f} s after its worker was killed (lease {LEASE} s)")
    assert freed - killed <= LEASE + 0.5
    fake_upstream.clear_faults()
    request.join(15)
    assert answers[0][0] == 0  # the killed worker's client lost its connection, no answer
