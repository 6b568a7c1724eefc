"""Probes: their status codes follow providers and Redis; liveness follows nothing."""

import pytest
from django.test import override_settings

from flexiai_django import breaker
from flexiai_django.testing.redis_server import RedisServer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def two(make_provider):
    make_provider("primary", priority=1)
    make_provider("secondary", priority=2)


def test_all_up_is_healthy_and_ready(client, two):
    health = client.get("/health")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "healthy" and body["worker_id"]
    assert [p["name"] for p in body["providers"]] == ["primary", "secondary"]
    first = body["providers"][0]
    assert (first["available"], first["circuit_state"], first["failure_count"]) == (
        True, "closed", 0)
    assert {"model", "priority", "last_failure_time"} <= set(first)
    assert client.get("/health/ready").status_code == 200


def test_one_breaker_open_is_degraded_but_ready(client, two):
    breaker("llm:primary").force_open()
    body = client.get("/health").json()
    assert body["status"] == "degraded"
    assert body["providers"][0]["circuit_state"] == "forced_open"
    ready = client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["available_providers"] == ["secondary"]


def test_every_breaker_open_is_unhealthy_and_not_ready(client, two):
    breaker("llm:primary").force_open()
    breaker("llm:secondary").force_open()
    assert client.get("/health").status_code == 503
    assert client.get("/health").json()["status"] == "unhealthy"
    assert client.get("/health/ready").status_code == 503
    assert client.get("/health/live").status_code == 200


def test_no_providers_is_not_ready(client):
    assert client.get("/health/ready").status_code == 503


def test_redis_down_is_degraded_and_still_ready(client, two):
    with RedisServer() as own:
        store = {"BACKEND": "flexiai_django.breakers.redis_store.RedisBreakerStore",
                 "OPTIONS": {"url": own.url, "retry_seconds": 0}}
        with override_settings(FLEXIAI={"BREAKER_STORE": store}):
            assert client.get("/health").json()["redis_connected"] is True
            own.kill()
            body = client.get("/health").json()
            assert (body["status"], body["redis_connected"]) == ("degraded", False)
            assert client.get("/health/ready").status_code == 200
            assert client.get("/health/live").status_code == 200
            own.start()
            assert client.get("/health").json()["redis_connected"] is True


def test_liveness_touches_no_database_and_no_redis(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/health/live")
    assert response.json() == {"status": "alive", "worker_id": response.json()["worker_id"]}
