"""Redis through Sentinel under real gunicorn + uvicorn workers: the master dies under load.

A master, a replica and three sentinels on loopback (started here); the site finds the
master through the sentinels (``REDIS_SENTINELS``, ``REDIS_URL=redis://mymaster/0``) for
its cache, channel layer, breaker store and rate limiter. The primary provider's breaker
is opened by real failures, the test waits until the replica has applied every write
(replication is asynchronous: a write the replica never got is lost in a failover), then
SIGKILLs the master while requests keep coming. No request may fail; ``/health`` must say
degraded (``redis_connected: false``) while no master answers, and connected again after;
the breaker must still be open on the promoted replica, and writes must reach it.
"""

import json
import os
import threading
import time

import httpx
import pytest
from django.conf import settings
from django.test import override_settings

from flexiai_django.redis_clients import fail_fast_client
from flexiai_django.testing.redis_sentinel import MASTER_NAME, SentinelCluster, sentinel_binary

from .conftest import BREAKER, FLEXIAI, Load, chat, start, wait_until_every_worker

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

if sentinel_binary() is None and not os.environ.get("CI"):
    pytest.skip("redis-sentinel is not installed (apt-get install -y redis-sentinel)",
                allow_module_level=True)

SETTINGS = {
    **FLEXIAI,
    "CACHE_ENABLED": True,  # every answer is written to the cache, through Sentinel too
    "ANONYMOUS_RATE_LIMIT_PER_MINUTE": 1_000_000,  # counted in Redis, never refused
}


@pytest.fixture(scope="module")
def cluster():
    with SentinelCluster() as started:
        yield started


class Traffic(Load):
    """conftest's Load with a new question each time (so each one reaches a provider
    and the answer cache), and a bound on the wait so a broken site fails, not hangs."""

    def _run(self):
        while not self._stop.is_set():
            self.results.append(chat(self.url, f"question {len(self.results)}"))

    def wait_for(self, more, timeout=30.0):
        target, deadline = len(self.results) + more, time.monotonic() + timeout
        while len(self.results) < target:
            assert time.monotonic() < deadline, f"no progress: {self.results[-3:]}"
            time.sleep(0.01)


class HealthWatch(threading.Thread):
    """Polls /health without pause; keeps (status, redis_connected) of each answer."""

    def __init__(self, url):
        super().__init__()
        self.url, self.seen, self._halt = url, [], threading.Event()

    def run(self):
        with httpx.Client(timeout=5) as client:
            while not self._halt.is_set():
                body = client.get(f"{self.url}/health", headers={"connection": "close"}).json()
                self.seen.append((body["status"], body["redis_connected"]))

    def stop(self):
        self._halt.set()
        self.join()


def connected(view):
    return view.get("redis_connected") is True and view.get("sync_enabled") is True


def writes(client):
    """Write commands a server has taken (answer-cache SETs, scripts), by name."""
    stats = client.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0)
               for name in ("set", "evalsha", "eval"))


def test_master_killed_under_load_fails_over_and_no_request_fails(cluster, seeded,
                                                                  fake_upstream):
    site = start("uvicorn", seeded, workers=2, REDIS_URL=f"redis://{MASTER_NAME}/0",
                 REDIS_SENTINELS=cluster.sentinels_env, FLEXIAI_ANONYMOUS_LOOPBACK="1",
                 FLEXIAI_JSON=json.dumps(SETTINGS))
    watch = HealthWatch(site.url)
    try:
        fake_upstream.set_fault("demo-primary", status=500)
        warm = [chat(site.url, f"warm {n}") for n in range(FLEXIAI["FAILURE_THRESHOLD"])]
        assert [status for status, _ in warm] == [200] * len(warm), warm
        wait_until_every_worker(site.url, 2, connected, path="/health")
        master = cluster.client(cluster.master.port)
        assert master.hget(f"flexiai:breaker:{{{BREAKER}}}", "state") == "open"
        synced = cluster.wait_for_replica_sync()

        watch.start()
        with Traffic(site.url, concurrency=3) as traffic:
            traffic.wait_for(20)
            cluster.kill_master()
            failover = cluster.wait_for_failover()
            # Each worker goes shared again with its next write to the new master.
            wait_until_every_worker(site.url, 2, connected, path="/health")
            promoted = cluster.client(cluster.replica.port)
            before = writes(promoted)
            traffic.wait_for(20)
            after = writes(promoted)
        watch.stop()

        assert traffic.failures == [], (traffic.failures[:3], site.output()[-3000:])
        # Degraded while no master answered, then connected again.
        assert ("degraded", False) in watch.seen, watch.seen[-20:]
        assert watch.seen[-1][1] is True, watch.seen[-20:]
        # The breaker opened before the kill is still open on the promoted replica,
        # and every worker reads it from there.
        assert promoted.hget(f"flexiai:breaker:{{{BREAKER}}}", "state") == "open"
        views = {}
        while len(views) < 2:
            body = httpx.get(f"{site.url}/circuit-breakers",
                             headers={"connection": "close"}).json()
            views[body["worker_id"]] = body["breakers"][BREAKER]["state"]
        assert set(views.values()) == {"open"}, views
        # Writes (rate-limit windows, breaker scripts) now go to the new master.
        assert after - before >= 10, (before, after)
        answered = len(traffic.results)
        down = sum(1 for _, ok in watch.seen if not ok)
        print(f"\nsentinel failover {failover:.2f}s (replica synced in {synced * 1000:.0f} "
              f"ms); {answered} requests, none failed; {down} of {len(watch.seen)} "
              "health polls said redis_connected: false")
        output = site.output()
        assert "Internal Server Error" not in output and "Traceback" not in output
    finally:
        if watch.is_alive():
            watch.stop()
        fake_upstream.clear_faults()
        site.stop()



def test_a_url_with_flexiai_redis_sentinels_finds_the_master(cluster):
    """A store, limiter or hedge budget given a ``url`` (not an alias) asks the sentinels:
    the URL's host names the master. (After the test above, the promoted replica.)"""
    flexiai = {**settings.FLEXIAI, "REDIS_SENTINELS": cluster.sentinels}
    with override_settings(FLEXIAI=flexiai):
        client = fail_fast_client(f"redis://{MASTER_NAME}/0", None, 0.25, 0.25)
        client.set("flexiai:sentinel-probe", "written")
    _, port = cluster.master_address()
    assert cluster.client(port).get("flexiai:sentinel-probe") == "written"
