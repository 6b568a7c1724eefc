"""Graceful drain on SIGTERM, under real servers (flexiai_django/drain.py).

Each test starts a server with a short drain, opens a slow stream (the fake upstream
pauses between pieces), sends SIGTERM the way Kubernetes or Docker does (to the master
alone), and measures: how soon ``/health/ready`` says 503, what is still served during
the drain, whether the stream completes, and when the process exits.
"""

import json
import os
import signal
import threading
import time

import httpx
import pytest

from .conftest import FLEXIAI, GUNICORN_CONF, start

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

DRAIN = 1.5
GRACE = 3.0  # servers.py starts gunicorn with --graceful-timeout 3
WORDS = "one two three four five six seven eight nine ten"
CHUNK_DELAY = 0.3  # about 3.3 s a stream: it outlasts the drain, not drain + grace
FIGURES: dict[str, dict[str, float]] = {}


def start_draining(kind, seeded, tmp_path):
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

    def __init__(self, url):
        super().__init__(daemon=True)
        self.url = url
        self.started = threading.Event()
        self.text = ""
        self.done = False
        self.error = None

    def run(self):
        body = {"model": "auto", "stream": True,
                "messages": [{"role": "user", "content": WORDS}]}
        try:
            with httpx.stream("POST", f"{self.url}/v1/chat/completions", json=body,
                              timeout=15) as response:
                for line in response.iter_lines():
                    if line == "data: [DONE]":
                        self.done = True
                    elif line.startswith("data: "):
                        for choice in json.loads(line[6:]).get("choices", []):
                            self.text += choice["delta"].get("content") or ""
                            self.started.set()
        except httpx.HTTPError as exc:
            self.error = exc
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


def drain_and_measure(server, fake_upstream):
    assert all(get(server.url, "/health/ready") == 200 for _ in range(4))
    fake_upstream.set_fault("demo-primary", chunk_delay=CHUNK_DELAY)
    stream = Stream(server.url)
    stream.start()
    assert stream.started.wait(10) and stream.error is None, stream.error

    sigterm = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    while get(server.url, "/health/ready") != 503:
        assert time.monotonic() - sigterm < 5, "readiness never said 503"
    to_503 = time.monotonic() - sigterm

    served, statuses = 0, []
    while time.monotonic() - sigterm < DRAIN - 0.3:  # well inside the drain
        statuses += [get(server.url, "/health/live"), chat(server.url),
                     get(server.url, "/health/ready")]
        served += 2
    stream.join(15)
    exit_code = server.process.wait(DRAIN + GRACE + 5)
    exited = time.monotonic() - sigterm
    figures = {"to_503": to_503, "served_in_drain": served, "exit": exited}
    FIGURES[server.kind] = figures
    print(f"\n{server.kind}: {figures}, log tail: {server.output()[-300:]!r}")
    return stream, statuses, exit_code, figures


def test_gunicorn_uvicorn_drains_on_sigterm(seeded, tmp_path, fake_upstream):
    server = start_draining("uvicorn", seeded, tmp_path)
    try:
        stream, statuses, exit_code, figures = drain_and_measure(server, fake_upstream)
    finally:
        server.stop()
    assert figures["to_503"] < 1.0
    assert statuses and statuses == [200, 200, 503] * (len(statuses) // 3)
    assert stream.error is None and stream.done, stream.error
    assert stream.text == f"echo: {WORDS}"
    assert exit_code == 0
    assert DRAIN <= figures["exit"] < DRAIN + GRACE + 1.5, "exits after the drain, in time"
