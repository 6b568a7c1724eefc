"""Real server processes sharing one Redis with this test process."""

import json
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from flexiai_django.testing.servers import ServerProcess, manage

BREAKER = "llm:demo-primary"
GUNICORN_CONF = Path(__file__).resolve().parents[2] / "deploy" / "gunicorn.conf.py"
FLEXIAI = {"FAILURE_THRESHOLD": 5, "OPEN_SECONDS": 60, "OPEN_JITTER": 0,
           "HALF_OPEN_MAX_CALLS": 1, "DEGRADED_MESSAGE": None, "CACHE_ENABLED": False,
           # These tests count the upstream calls a fault costs; retries are tested apart.
           "MAX_RETRIES": 0,
           # These tests send hundreds of anonymous demo requests a minute on purpose.
           "ANONYMOUS_RATE_LIMIT_PER_MINUTE": 0,
           # They count the calls a provider gets and watch half-open probes; the active
           # prober's own test turns it on.
           "ACTIVE_PROBE_SECONDS": None,
           # Servers stop at once between tests; the drain has its own test.
           "DRAIN_SECONDS": 0}


def site_env(tmp_path, redis_url=None, **flexiai):
    env = {
        "FLEXIAI_DB": str(tmp_path / "site.sqlite3"),
        "REDIS_URL": redis_url or os.environ["REDIS_URL"],
        "FLEXIAI_JSON": json.dumps({**FLEXIAI, **flexiai}),
        "DJANGO_DEBUG": "0",
        "OPENAI_API_KEY": "",
        "ANTHROPIC_API_KEY": "",
    }
    return env


@pytest.fixture(scope="session")
def _seeded_once(tmp_path_factory, _fake_upstream_server):
    """Migrate and seed once per run (about 5 s): each module gets a copy."""
    tmp = tmp_path_factory.mktemp("seeded")
    env = site_env(tmp)
    manage("migrate", "--noinput", env=env)
    manage("flexiai_seed_demo", "--upstream", _fake_upstream_server.url, env=env)
    return tmp / "site.sqlite3"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory, _seeded_once):
    """A migrated SQLite file of this module's own, with the demo providers pointing at
    the fake upstream (a module may edit its providers without touching another's)."""
    tmp = tmp_path_factory.mktemp("site")
    shutil.copyfile(_seeded_once, tmp / "site.sqlite3")
    return tmp


def start(kind, tmp, workers=2, **env_overrides):
    env = {**site_env(tmp), **env_overrides}
    return ServerProcess(kind, env, workers=workers).start()


def edit_provider(tmp, name, **fields):
    """Change a provider row the way an admin would: another process, a saved model."""
    assignments = "; ".join(f"p.{k} = {v!r}" for k, v in fields.items())
    manage("shell", "-c",
           "from flexiai_django.models import Provider; "
           f"p = Provider.objects.get(name={name!r}); {assignments}; p.save()",
           env=site_env(tmp))


def chat(url, message="hi"):
    try:
        response = httpx.post(f"{url}/chat/direct", json={"message": message},
                              headers={"connection": "close"}, timeout=15)
    except httpx.TransportError as exc:
        return 0, {"error": type(exc).__name__}
    return response.status_code, response.json()


def load(url, total, concurrency):
    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(lambda _: chat(url), range(total)))


def breaker_views(url, expected_workers, tries=600):
    """Latest /circuit-breakers view of each worker, once all have answered."""
    seen = {}
    with httpx.Client(timeout=5) as client:
        for _ in range(tries):
            body = client.get(f"{url}/circuit-breakers", headers={"connection": "close"}).json()
            seen[body["worker_id"]] = body
            if len(seen) >= expected_workers:
                return seen
    raise AssertionError(f"only {len(seen)} of {expected_workers} workers answered")


def local_state(view):
    local = view["breakers"].get(BREAKER, {}).get("local")
    return local and local["state"]


def wait_until_every_worker(url, workers, predicate, timeout=10.0, path="/circuit-breakers"):
    """Poll until each worker's own latest view satisfies ``predicate``; returns seconds taken."""
    started = time.monotonic()
    latest = {}
    with httpx.Client(timeout=5) as client:
        while time.monotonic() - started < timeout:
            body = client.get(f"{url}{path}", headers={"connection": "close"}).json()
            latest[body["worker_id"]] = body
            if len(latest) >= workers and all(predicate(v) for v in latest.values()):
                return time.monotonic() - started
    states = {w: local_state(v) if "breakers" in v else v.get("status")
              for w, v in latest.items()}
    raise AssertionError(f"workers did not converge within {timeout}s: {states}")


class Load:
    """Requests sent without pause from several threads until stopped; counts outcomes."""

    def __init__(self, url, concurrency=4):
        self.url = url
        self.results = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(concurrency)]

    def _run(self):
        while not self._stop.is_set():
            self.results.append(chat(self.url))

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def wait_for(self, more):
        target = len(self.results) + more
        while len(self.results) < target:
            time.sleep(0.01)

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join()

    @property
    def failures(self):
        return [body for status, body in self.results if status != 200]


def sdk_answer_from(sdk):
    """One "hi" through the openai SDK: the provider that answered (the fake's echo)."""
    raw = sdk.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "hi"}])
    assert raw.parse().choices[0].message.content == "echo: hi"
    return raw.headers["x-flexiai-provider"]


def is_probe(request):
    """A recorded upstream request is an active or warm-up probe (the minimal call)."""
    body = request.json or {}
    return body.get("messages") == [{"role": "user", "content": "ping"}] and (
        body.get("max_tokens") == 1)
