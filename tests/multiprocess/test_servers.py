"""The same shared state under every supported server, and across instances."""

import time

import httpx
import openai
import pytest
import redis as redis_lib

from flexiai_django.breakers import get_store
from flexiai_django.breakers.state import State
from flexiai_django.testing.redis_server import RedisServer

from .conftest import BREAKER, GUNICORN_CONF, load, local_state, start, wait_until_every_worker

pytestmark = [pytest.mark.slow, pytest.mark.django_db]
GROUP_KEY = "asgi:group:flexiai"  # channels-redis: "<prefix>:group:<name>"


@pytest.fixture
def instances(seeded, fake_upstream):
    """Two instances behind no balancer, one Redis: gunicorn sync workers and daphne."""
    get_store().force(BREAKER, State.CLOSED)
    servers = [start("gunicorn-sync", seeded, workers=2), start("daphne", seeded)]
    yield servers
    for server in servers:
        server.stop()
    get_store().force(BREAKER, State.CLOSED)


def test_every_instance_and_worker_follows_one_breaker(instances, fake_upstream):
    sync_workers, daphne = instances
    for server in instances:
        assert {body["provider"] for _, body in load(server.url, 6, 2)} == {"demo-primary"}

    get_store().force(BREAKER, State.FORCED_OPEN)

    wait_until_every_worker(sync_workers.url, 2, lambda v: local_state(v) == "forced_open")
    wait_until_every_worker(daphne.url, 1, lambda v: local_state(v) == "forced_open")
    for server in instances:
        assert {body["provider"] for _, body in load(server.url, 6, 2)} == {"demo-secondary"}
    assert fake_upstream.hits("demo-primary") == 12


def test_failures_in_one_instance_open_the_breaker_for_the_other(instances, fake_upstream):
    sync_workers, daphne = instances
    fake_upstream.set_fault("demo-primary", status=500)
    load(sync_workers.url, 10, 1)
    assert get_store().get(BREAKER).state is State.OPEN
    hits = fake_upstream.hits("demo-primary")
    assert {body["provider"] for _, body in load(daphne.url, 6, 2)} == {"demo-secondary"}
    assert fake_upstream.hits("demo-primary") == hits


@pytest.mark.parametrize("kind, how", [
    ("uvicorn", "ASGI lifespan shutdown"),
    ("gunicorn-sync", "deploy/gunicorn.conf.py's worker_exit"),
])
def test_stopped_workers_leave_the_broadcast_group_at_once(seeded, tmp_path, kind, how):
    """Not after group_expiry: until then every broadcast is also queued for them."""
    with RedisServer() as own:
        members = redis_lib.Redis.from_url(own.url)
        config = {} if kind == "uvicorn" else {
            "GUNICORN_CMD_ARGS": f"--config {GUNICORN_CONF}", "WORKER_CLASS": "gthread",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
        server = start(kind, seeded, workers=2, REDIS_URL=own.url, **config)
        try:
            deadline = time.monotonic() + 30
            while members.zcard(GROUP_KEY) < 2:  # each worker joins on its first request
                assert time.monotonic() < deadline, "the workers never joined the group"
                httpx.get(f"{server.url}/health", headers={"connection": "close"}, timeout=5)
            assert members.zcard(GROUP_KEY) == 2
        finally:
            server.stop()
        assert members.zcard(GROUP_KEY) == 0, how


def test_a_stream_reaches_the_client_whole_under_every_server(instances, fake_upstream):
    """WSGI workers can only stream a sync iterator: given an async one, Django collects it
    on another event loop, and the answer stopped after its first piece."""
    question = [{"role": "user", "content": "one two three four five"}]
    for server in instances:
        sdk = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
        chunks = list(sdk.chat.completions.create(model="auto", messages=question,
                                                  stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "echo: one two three four five", server.kind
        assert chunks[-1].choices[0].finish_reason == "stop"
