"""A Redis that answers but refuses writes, under real gunicorn + uvicorn workers.

Out of memory (``maxmemory`` with ``noeviction``) and a read-only replica both answer
PING and reads and refuse writes with a ``ResponseError``. With the primary provider
failing, every request records a failure through the breaker script, which such a
server refuses: the request must still get the fallback (never a 500), ``/health``
must say ``degraded`` with ``redis_connected: false``, each worker must log the outage
once, and everything must go shared again when Redis takes writes.
"""

import json
import time

import httpx
import pytest
import redis

from flexiai_django.testing.redis_server import RedisServer, free_port

from .conftest import FLEXIAI, Load, start, wait_until_every_worker

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

SETTINGS = {
    **FLEXIAI,
    "FAILURE_THRESHOLD": 1_000_000,  # the primary is tried, and fails, on every request
    "CACHE_ENABLED": True,  # answer-cache writes meet the same refusing Redis
    "DEGRADED_MESSAGE": "degraded answer",
    "ANONYMOUS_RATE_LIMIT_PER_MINUTE": 1_000_000,  # counted, never refused
}


def start_oom(admin):
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", 1)


def end_oom(admin):
    admin.config_set("maxmemory", 0)


def start_readonly(admin):
    admin.replicaof("127.0.0.1", free_port())  # nothing listens there: never syncs


def end_readonly(admin):
    admin.replicaof("NO", "ONE")


FAULTS = [("OutOfMemoryError", start_oom, end_oom),
          ("ReadOnlyError", start_readonly, end_readonly)]


def chat(url):
    """POST /chat/direct; a non-JSON answer (Django's HTML 500 page) is kept as text."""
    try:
        response = httpx.post(f"{url}/chat/direct", json={"message": "hi"},
                              headers={"connection": "close"}, timeout=15)
    except httpx.TransportError as exc:
        return 0, {"error": type(exc).__name__}
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, {"text": response.text[:200]}


class Traffic(Load):
    """conftest's Load, with an answer that is not JSON counted rather than killing a
    sender thread, and a bound on the wait so a broken site fails instead of hanging."""

    def _run(self):
        while not self._stop.is_set():
            self.results.append(chat(self.url))

    def wait_for(self, more, timeout=60.0):
        target, deadline = len(self.results) + more, time.monotonic() + timeout
        while len(self.results) < target:
            assert time.monotonic() < deadline, f"no progress: {self.results[-3:]}"
            time.sleep(0.01)


def redis_connected(value):
    return lambda view: view.get("redis_connected") is value


def healthy(view):
    return view.get("status") == "healthy" and view.get("redis_connected") is True


def completion(url):
    response = httpx.post(f"{url}/v1/chat/completions", timeout=15,
                          json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]},
                          headers={"connection": "close"})
    return response.status_code, response.json()


def served_by_fallback(results):
    return {(body.get("provider"), body.get("tier")) for status, body in results}


def test_a_redis_refusing_writes_degrades_and_never_answers_500(seeded, fake_upstream):
    with RedisServer() as own_redis:
        admin = redis.Redis.from_url(own_redis.url)
        site = start("uvicorn", seeded, workers=2, REDIS_URL=own_redis.url,
                     FLEXIAI_ANONYMOUS_LOOPBACK="1", FLEXIAI_JSON=json.dumps(SETTINGS))
        try:
            fake_upstream.set_fault("demo-primary", status=500)
            warm = [chat(site.url) for _ in range(6)]  # the breaker keys now exist
            assert [status for status, _ in warm] == [200] * 6, warm
            wait_until_every_worker(site.url, 2, redis_connected(True), path="/health")
            seen = []
            for kind, start_fault, end_fault in FAULTS:
                start_fault(admin)
                with Traffic(site.url, concurrency=2) as traffic:
                    traffic.wait_for(10)
                    assert traffic.failures == [], traffic.failures[:2]
                    wait_until_every_worker(site.url, 2, redis_connected(False), path="/health")
                    health = httpx.get(f"{site.url}/health").json()
                    assert health["status"] == "degraded" and health["redis_connected"] is False
                    status, body = completion(site.url)
                    assert status == 200, body
                    assert body["choices"][0]["message"]["content"]
                    traffic.wait_for(10)
                assert traffic.failures == [], site.output()[-3000:]
                assert served_by_fallback(traffic.results) == {("demo-secondary", "provider")}
                seen.append((kind, len(traffic.results)))

                end_fault(admin)
                with Traffic(site.url, concurrency=2) as traffic:
                    # The store, the limiter and the answer cache each come back with
                    # their next successful write: healthy once all three have.
                    wait_until_every_worker(site.url, 2, healthy, path="/health")
                    traffic.wait_for(10)
                assert traffic.failures == [], site.output()[-3000:]
            print(f"\nrequests while Redis refused writes: {seen}, none failed")

            output = site.output()
            assert "Internal Server Error" not in output and "Traceback" not in output
            # Once per worker and outage, never per request; the type, never the text.
            assert output.count("breaker store lost Redis (") == 2 * len(FAULTS), output[-3000:]
            assert output.count("breaker store reconnected to Redis") == 2 * len(FAULTS)
            assert output.count("answer cache failing (") <= 2 * len(FAULTS)
            for kind, _, _ in FAULTS:
                assert f"breaker store lost Redis ({kind})" in output
            assert "maxmemory" not in output and "read only replica" not in output
        finally:
            fake_upstream.clear_faults()
            site.stop()
            admin.close()
