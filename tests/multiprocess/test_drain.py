"""Graceful drain on SIGTERM, under real servers (flexiai_django/drain.py, daphne_drain.py).

Each server starts with a short drain, gets a slow request in flight, then SIGTERM the
way Kubernetes or Docker sends it (to the master alone). Measured: how soon
``/health/ready`` says 503, what is still served during the drain, whether the request
in flight completes, and when the process exits. gunicorn + uvicorn workers and daphne
hold a slow stream (the fake upstream pauses between pieces); gunicorn's sync (gthread)
workers a slow plain call, because a stream served over WSGI ends after its first piece
today, drain or not. The three servers start side by side and share one fixture.
"""

import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis as redis_lib

from flexiai_django import broadcast

from .conftest import FLEXIAI, GUNICORN_CONF, start

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

DRAIN = 1.5
GRACE = 3.0  # servers.py starts gunicorn with --graceful-timeout 3; daphne: the setting
WORDS = "one two three four five six seven eight nine ten"
CHUNK_DELAY = 0.25  # about 2.5 s a stream: it outlasts the drain, not drain + grace
SLOW_CALL = 2.2  # the sync workers' plain call in flight: past the drain, within grace
KINDS = ("uvicorn", "daphne", "gunicorn-sync")
GROUP_KEY = "asgi:group:flexiai"  # channels-redis: "<prefix>:group:<name>"


def start_draining(kind, seeded, tmp_path):
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = {"FLEXIAI_JSON": json.dumps({**FLEXIAI, "DRAIN_SECONDS": DRAIN,
                                          "DRAIN_TIMEOUT_SECONDS": GRACE})}
    if kind != "daphne":
        config.update(GUNICORN_CMD_ARGS=f"--config {GUNICORN_CONF}",
                      PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"))
    if kind == "gunicorn-sync":
        config["WORKER_CLASS"] = "gthread"  # servers.py's sync command line adds --threads
    return start(kind, seeded, workers=2, **config)


class Stream(threading.Thread):
    """One streamed chat completion read to its end; ``started`` once text arrived."""

    def __init__(self, url, upstream):
        super().__init__(daemon=True)
        self.url = url
        self.started = threading.Event()
        self.text = ""
        self.complete = False
        self.error = None

    def run(self):
        body = {"model": "auto", "stream": True,
                "messages": [{"role": "user", "content": WORDS}]}
        try:
            with httpx.stream("POST", f"{self.url}/v1/chat/completions", json=body,
                              timeout=15) as response:
                for line in response.iter_lines():
                    if line == "data: [DONE]":
                        self.complete = self.text == f"echo: {WORDS}"
                    elif line.startswith("data: "):
                        for choice in json.loads(line[6:]).get("choices", []):
                            self.text += choice["delta"].get("content") or ""
                            self.started.set()
        except httpx.HTTPError as exc:
            self.error = exc
        self.started.set()


class SlowCall(threading.Thread):
    """One plain call the upstream answers late; ``started`` once the upstream has it."""

    def __init__(self, url, upstream):
        super().__init__(daemon=True)
        self.url = url
        self.upstream = upstream
        self.started = threading.Event()
        self.complete = False
        self.error = None

    def run(self):
        hits = self.upstream.hits("demo-primary")
        self.upstream.set_fault("demo-primary", delay=SLOW_CALL, times=1)
        watcher = threading.Thread(target=self._watch, args=(hits,), daemon=True)
        watcher.start()
        try:
            response = httpx.post(f"{self.url}/chat/direct", json={"message": WORDS},
                                  timeout=15)
            self.complete = (response.status_code == 200
                             and response.json()["content"] == f"echo: {WORDS}")
        except httpx.HTTPError as exc:
            self.error = exc
        self.started.set()

    def _watch(self, hits):
        while self.upstream.hits("demo-primary") == hits and not self.started.is_set():
            time.sleep(0.01)
        self.started.set()


def get(url, path):
    try:
        return httpx.get(f"{url}{path}", headers={"connection": "close"}, timeout=5).status_code
    except httpx.TransportError:
        return 0


def chat(url):
    try:
        return httpx.post(f"{url}/chat/direct", json={"message": "hi"},
                          headers={"connection": "close"}, timeout=10).status_code
    except httpx.TransportError:
        return 0


def drain_and_measure(server, upstream):
    """SIGTERM with a request in flight; what each phase of the drain looked like."""
    assert all(get(server.url, "/health/ready") == 200 for _ in range(4))
    in_flight = (SlowCall if server.kind == "gunicorn-sync" else Stream)(server.url, upstream)
    in_flight.start()
    assert in_flight.started.wait(10) and in_flight.error is None, in_flight.error

    sigterm = time.monotonic()
    server.process.send_signal(signal.SIGTERM)  # the master alone, as Kubernetes does
    while get(server.url, "/health/ready") != 503:
        assert time.monotonic() - sigterm < 5, "readiness never said 503"
    to_503 = time.monotonic() - sigterm
    probe_503 = get(server.url, "/health/ready?providers=0")  # the k8s manifest's probe
    kept_alive = httpx.get(f"{server.url}/health/live", timeout=5).headers.get("connection")

    during = []  # (seconds after SIGTERM when answered, live, chat, ready)
    while time.monotonic() - sigterm < DRAIN - 0.3:  # well inside the drain
        statuses = (get(server.url, "/health/live"), chat(server.url),
                    get(server.url, "/health/ready"))
        during.append((time.monotonic() - sigterm, *statuses))
    in_flight.join(15)
    in_flight_done = time.monotonic() - sigterm
    exit_code = server.process.wait(DRAIN + GRACE + 5)
    figures = {"to_503": round(to_503, 3), "served_in_drain": 2 * len(during),
               "in_flight_done": round(in_flight_done, 3),
               "exit": round(time.monotonic() - sigterm, 3)}
    print(f"\n{server.kind}: {figures}")
    return {"in_flight": in_flight, "during": during, "probe_503": probe_503,
            "kept_alive": kept_alive,
            "exit_code": exit_code, **figures, "log": server.output()}


@pytest.fixture(scope="module")
def drained(seeded, tmp_path_factory, _fake_upstream_server):
    """The three servers, started side by side; the streaming ones drained side by side,
    then the sync one (its slow call is a one-off fault the others must not take)."""
    upstream = _fake_upstream_server
    upstream.reset()
    tmp = tmp_path_factory.mktemp("drain")
    group = redis_lib.Redis.from_url(os.environ["REDIS_URL"])
    members_before = set(group.zrange(GROUP_KEY, 0, -1))
    with ThreadPoolExecutor(len(KINDS)) as pool:
        servers = list(pool.map(lambda kind: start_draining(kind, seeded, tmp / kind), KINDS))
        try:
            upstream.set_fault("demo-primary", chunk_delay=CHUNK_DELAY)
            results = dict(zip(KINDS[:2], pool.map(
                lambda server: drain_and_measure(server, upstream), servers[:2]), strict=True))
            upstream.reset()
            results[KINDS[2]] = drain_and_measure(servers[2], upstream)
        finally:
            for server in servers:
                server.stop()
            upstream.reset()
    results["left_behind"] = {m for m in set(group.zrange(GROUP_KEY, 0, -1)) - members_before
                              if not ours(m)}
    return results


def ours(member: bytes) -> bool:
    """A channel of this test process's own listener, which re-joins the group by itself
    after the test reset flushed Redis (not a server's)."""
    listener = broadcast.running_listener()
    prefix = getattr(getattr(listener, "layer", None), "client_prefix", None)
    return prefix is not None and f".{prefix}!".encode() in member


@pytest.mark.parametrize("kind", KINDS)
def test_sigterm_turns_readiness_to_503_at_once_while_requests_are_still_served(
        drained, kind):
    result = drained[kind]
    assert result["to_503"] < 1.0
    assert result["probe_503"] == 503
    assert result["during"], "nothing was sent during the drain"
    assert all(answered[1:] == (200, 200, 503) for answered in result["during"]), result["during"]


def test_asgi_responses_close_kept_alive_connections_while_draining(drained):
    """So a load balancer's pool holds none when the socket closes (uvicorn honours it)."""
    assert drained["uvicorn"]["kept_alive"] == "close"


@pytest.mark.parametrize("kind", KINDS)
def test_the_request_in_flight_completes(drained, kind):
    in_flight = drained[kind]["in_flight"]
    assert in_flight.error is None and in_flight.complete, in_flight.error
    assert drained[kind]["in_flight_done"] > DRAIN, "it ran on after the workers were stopped"


def test_every_worker_left_the_broadcast_group(drained):
    """daphne through DrainOnSigterm, gunicorn's workers through their own exit hooks."""
    assert drained["left_behind"] == set()


@pytest.mark.parametrize("kind", KINDS)
def test_the_server_exits_cleanly_after_the_drain(drained, kind):
    result = drained[kind]
    assert result["exit_code"] == 0, result["log"][-2000:]
    assert DRAIN <= result["exit"] < DRAIN + GRACE + 1.5, "exits after the drain, in time"
