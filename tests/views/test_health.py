"""Probes: their status codes follow providers and Redis; liveness follows nothing.

Which providers stand behind the service is for staff and admin keys only.
"""

import time

import pytest
from django.test import override_settings

from flexiai_django import breaker, drain
from flexiai_django.models import KEY_UNDECRYPTABLE, ApiKey, Provider
from flexiai_django.testing.redis_server import RedisServer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def two(make_provider):
    make_provider("primary", priority=1)
    make_provider("secondary", priority=2)


def test_all_up_is_healthy_and_ready(admin_client, two):
    client = admin_client
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


def test_one_breaker_open_is_degraded_but_ready(admin_client, two):
    client = admin_client
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


def test_readiness_without_providers_ignores_an_outage(client, two):
    """?providers=0 is for orchestrator probes: an outage shared by every instance must
    not pull them all; only a drain says 503 there."""
    breaker("llm:primary").force_open()
    breaker("llm:secondary").force_open()
    assert client.get("/health/ready?providers=0").status_code == 200


def test_a_draining_server_is_not_ready_but_alive(client, two):
    drain.begin()
    try:
        for path in ("/health/ready", "/health/ready?providers=0"):
            response = client.get(path)
            assert response.status_code == 503 and response.json()["draining"] is True
        assert client.get("/health/live").status_code == 200
    finally:
        drain.reset()
    assert client.get("/health/ready").status_code == 200


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
            # Found answering again by a background PING (tried every 0.5 s).
            deadline = time.monotonic() + 5
            while client.get("/health").json()["redis_connected"] is not True:
                assert time.monotonic() < deadline, "never connected again"
                time.sleep(0.05)


def test_liveness_touches_no_database_and_no_redis(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/health/live")
    assert response.json() == {"status": "alive", "worker_id": response.json()["worker_id"]}


# -- who sees which providers -------------------------------------------------------------

def bearer(scopes):
    key = ApiKey(name=f"key-{scopes}", scopes=scopes)
    token = key.issue()
    key.save()
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


NO_DETAIL = {"status", "worker_id", "redis_connected", "answer_cache_ok", "sync_enabled", "store"}


@pytest.mark.parametrize("caller", [
    {},                                               # anonymous on loopback ("chat" scope)
    {"REMOTE_ADDR": "203.0.113.7"},                   # anonymous from afar
    "chat",                                           # a chat-only key
    {"HTTP_AUTHORIZATION": "Bearer fxa-000000000000-wrong"},  # a wrong key
])
def test_callers_without_admin_rights_get_the_status_but_no_providers(client, two, caller):
    extra = bearer(caller) if isinstance(caller, str) else caller
    breaker("llm:primary").force_open()
    health = client.get("/health", **extra)
    assert health.status_code == 200
    assert set(health.json()) == NO_DETAIL and health.json()["status"] == "degraded"
    ready = client.get("/health/ready", **extra)
    assert ready.status_code == 200 and set(ready.json()) == {"ready", "worker_id"}
    for body in (health.content, ready.content):
        for hidden in (b"primary", b"secondary", b"-model", b"openai"):
            assert hidden not in body


def test_no_detail_does_not_change_the_status_codes(client, two):
    breaker("llm:primary").force_open()
    breaker("llm:secondary").force_open()
    assert client.get("/health").status_code == 503
    assert client.get("/health/ready").status_code == 503


@pytest.mark.parametrize("scopes", ["admin", "chat,admin"])
def test_an_admin_key_sees_every_provider(client, two, scopes):
    extra = bearer(scopes)
    breaker("llm:primary").force_open()
    body = client.get("/health", **extra).json()
    assert [(p["name"], p["model"]) for p in body["providers"]] == [
        ("primary", "primary-model"), ("secondary", "secondary-model")]
    ready = client.get("/health/ready", **extra).json()
    assert ready["available_providers"] == ["secondary"]


def test_a_provider_cooling_down_says_until_when_and_its_window_is_shown(client, make_provider):
    make_provider("primary", priority=1, context_window=8000)
    cooling = breaker("llm:primary")
    cooling.store.cool_down(cooling.name, cooling.config, 30)
    primary = client.get("/health", **bearer("admin")).json()["providers"][0]
    assert primary["available"] is False and primary["cooldown_until"]
    assert primary["context_window"] == 8000


def test_a_staff_session_sees_every_provider(admin_client, two):
    assert [p["name"] for p in admin_client.get("/health").json()["providers"]] == [
        "primary", "secondary"]
    assert admin_client.get("/health/ready").json()["available_providers"] == [
        "primary", "secondary"]


def undecryptable(name, priority):
    with override_settings(SECRET_KEY="a-secret-since-replaced"):
        p = Provider(name=name, kind="openai", model="m", priority=priority)
        p.set_api_key("sk-lost-key-123456")
        p.save()


def test_an_undecryptable_provider_makes_health_degraded_and_is_listed(admin_client,
                                                                       make_provider):
    make_provider("primary", priority=1)
    undecryptable("broken", 2)
    body = admin_client.get("/health").json()
    assert body["status"] == "degraded"
    assert [(p["name"], p["available"], p["misconfigured"]) for p in body["providers"]] == [
        ("primary", True, None), ("broken", False, KEY_UNDECRYPTABLE)]
    assert "sk-lost-key" not in admin_client.get("/health").content.decode()
    ready = admin_client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["available_providers"] == ["primary"]


def test_only_misconfigured_providers_is_unhealthy(client):
    undecryptable("broken", 1)
    health = client.get("/health")
    assert health.status_code == 503 and health.json()["status"] == "unhealthy"
    assert client.get("/health/ready").status_code == 503


def test_a_failing_answer_cache_makes_health_degraded(client, make_provider, settings):
    from flexiai_django import cache_tier
    from flexiai_django.chat_types import ChatRequest, Completion

    make_provider("primary")
    settings.CACHES = {**settings.CACHES, "broken": {
        "BACKEND": "django_redis.cache.RedisCache", "LOCATION": "redis://127.0.0.1:1/0",
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.1, "SOCKET_TIMEOUT": 0.1}}}
    settings.FLEXIAI = {**settings.FLEXIAI, "CACHE_ALIAS": "broken"}
    cache_tier.remember(ChatRequest.build("hi"), "primary", Completion("hello", "m"))
    body = client.get("/health").json()
    assert (body["status"], body["answer_cache_ok"]) == ("degraded", False)


@pytest.mark.django_db
def test_providers_json_shows_requests_in_flight(client, make_provider):
    from flexiai_django import inflight

    make_provider("large", tier="large", capacity=3)
    inflight.get_slots().clear()
    try:
        inflight.get_slots().acquire("large", 3)
        body = client.get("/providers").json()
        (row,) = body["providers"]
        assert (row["tier"], row["capacity"], row["in_flight"]) == ("large", 3, 1)
        assert body["tiers"] == [
            {"tier": "large", "in_flight": 1, "capacity": 3, "warming": False}]
    finally:
        inflight.get_slots().clear()
