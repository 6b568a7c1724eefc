"""A rolling restart of two instances behind the shipped nginx and HAProxy configs loses nothing.

Two instances (gunicorn + uvicorn workers with deploy/gunicorn.conf.py, so SIGTERM drains)
share a private redis-server and the fake upstream; the shipped deploy/nginx.conf and
deploy/haproxy.cfg are rendered onto free ports in front of them. Clients send plain
chat completions and streams (each about a second long, so some are always in flight)
through the proxy while each instance in turn gets SIGTERM, exits, starts again and comes
back into rotation (behind nginx, the operator marks it ``down`` and reloads nginx first:
see ``take_out``). Every request must succeed and every stream end with ``[DONE]`` and
its whole text; a stream was in flight on each instance when it got its SIGTERM.

The primary provider's breaker is forced open before the load starts (from a third
process, as an operator would): every answer must come from the secondary, the primary
must get no call at all, and each instance, the restarted ones included, must report it
open throughout. A worker that lost the shared state would call the primary.
"""

import os
import time

import httpx
import pytest

from flexiai_django.testing import haproxy, nginx
from flexiai_django.testing.redis_server import RedisServer
from flexiai_django.testing.rolling import Traffic, rolling_restart
from flexiai_django.testing.servers import ServerProcess, manage

from .conftest import GUNICORN_CONF, site_env

pytestmark = pytest.mark.slow

DRAIN = 2.0  # HAProxy checks every second and takes an instance out at the first 503
CHUNK_DELAY = 0.12  # 8 words a stream: about a second each
PROXIES = {"nginx": (nginx.find_nginx, nginx.INSTALL_HINT, nginx.NginxProxy),
           "haproxy": (haproxy.find_haproxy, haproxy.INSTALL_HINT, haproxy.HAProxy)}


def _in_ci():
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def redis_server():
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def site(seeded, redis_server, tmp_path_factory):
    """The environment both instances share, with an API key and the primary forced open."""
    env = {**site_env(seeded, redis_server.url, DRAIN_SECONDS=DRAIN),
           "GUNICORN_CMD_ARGS": f"--config {GUNICORN_CONF}"}
    token = manage("shell", "-c", "from flexiai_django.testing.keys import issue_api_key; "
                   "print(issue_api_key('rolling')[1])", env=env).strip().splitlines()[-1]
    manage("shell", "-c", "from flexiai_django.breakers import get_store; "
           "from flexiai_django.breakers.state import State; "
           "get_store().force('llm:demo-primary', State.FORCED_OPEN)", env=env)
    return env, token


@pytest.fixture(scope="module")
def instances(site, tmp_path_factory):
    env, _ = site
    servers = []
    for name in ("app1", "app2"):
        metrics = tmp_path_factory.mktemp(f"metrics-{name}")
        servers.append(ServerProcess("uvicorn", {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics)},
                                     workers=2))
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def take_out(proxy_name, proxy):
    """HAProxy's health checks see the draining instance's 503 and take it out by
    themselves. nginx (open source) has no active checks: it keeps sending new
    connections until the socket closes, and one may land in the closing socket's
    accept queue (a reset) or be closed unread by the exiting worker; a POST there is
    never retried (502). So the operator takes the instance out first, as the README
    says: ``down`` and ``nginx -s reload``; the drain covers what was already on its way."""
    if proxy_name == "nginx":
        return lambda server, out: proxy.set_down(server.url, out)
    return None


def primary_state(server):
    body = httpx.get(f"{server.url}/circuit-breakers", headers={"connection": "close"},
                     timeout=5).json()
    return body["breakers"].get("llm:demo-primary", {}).get("state")


@pytest.mark.parametrize("proxy_name", PROXIES)
def test_a_rolling_restart_loses_no_request_and_no_stream(proxy_name, instances, site,
                                                          _fake_upstream_server):
    find, hint, proxy_class = PROXIES[proxy_name]
    if find() is None:
        if _in_ci():
            pytest.fail(f"{proxy_name} is missing under CI ({hint})")
        pytest.skip(f"{proxy_name} is not installed ({hint})")
    _, token = site
    upstream = _fake_upstream_server
    upstream.reset()
    upstream.set_reply_prefix("demo-secondary", "secondary: ")
    upstream.set_fault("demo-secondary", chunk_delay=CHUNK_DELAY)
    primary_calls = upstream.hits("demo-primary")
    seen = []  # (instance restarted, primary's state on each instance just after)

    def check_shared_state(restarted):
        seen.append((restarted.url, [primary_state(s) for s in instances]))

    try:
        with proxy_class([s.url for s in instances]) as proxy, \
                Traffic(proxy.url, token, lambda prompt: f"secondary: {prompt}") as traffic:
            seen.append(("before", [primary_state(s) for s in instances]))
            deadline = time.monotonic() + 30
            while sum(o.ok for o in traffic.outcomes) < 20:  # load has started
                assert time.monotonic() < deadline, traffic.outcomes[-3:]
                time.sleep(0.05)
            report = rolling_restart(instances, traffic, between=check_shared_state,
                                     take_out=take_out(proxy_name, proxy))
            settle = len(traffic.outcomes)
            while len(traffic.outcomes) < settle + 20:  # and carries on after
                time.sleep(0.05)
            proxy_log = proxy.errors() if proxy_name == "nginx" else proxy.output()
    finally:
        upstream.reset()

    outcomes = traffic.outcomes
    streams = [o for o in outcomes if o.kind == "stream"]
    timings = [(round(r.exited, 2), round(r.ready, 2), round(r.back_in_rotation, 2))
               for r in report]
    print(f"\n{proxy_name}: {len(outcomes)} requests ({len(streams)} streams), "
          f"{len(traffic.failures)} failed, {len(traffic.retried)} sent again; "
          f"restarts (exited, ready, back) {timings}")
    failed = [(round(o.started - report[0].sigterm_at, 3), o.kind, o.detail[:60])
              for o in traffic.failures]
    assert failed == [], ([(round(r.sigterm_at - report[0].sigterm_at, 3), r.exited)
                           for r in report], proxy_log[-3000:])
    assert len(streams) >= 6
    if proxy_name == "haproxy":  # nothing reloads: no connection is closed under a client
        assert traffic.retried == []
    for restarted in report:  # streams of the stopped instance ran across its SIGTERM
        across = [o for o in streams if o.started < restarted.sigterm_at < o.started + o.latency
                  and int(o.worker.rpartition(":")[2]) in restarted.old_pids]
        assert across, f"no stream was in flight on {restarted.old_pids} at its SIGTERM"
    assert upstream.hits("demo-primary") == primary_calls, "a worker called the open primary"
    assert all(states == ["forced_open", "forced_open"] for _, states in seen), seen
    assert len(seen) == 3
