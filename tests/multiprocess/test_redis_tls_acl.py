"""A Redis over TLS only, with an ACL user allowed only the commands the app runs.

The server's certificate comes from a CA generated here (openssl); the app connects with
the README's settings: a ``rediss://user:password@host:port/0?ssl_cert_reqs=required&
ssl_ca_certs=...`` REDIS_URL, which the demo settings hand to django-redis, the breaker
store (through the cache alias) and channels-redis. Wrong credentials or a wrong CA stop
the server at start with a clear message; an unreachable Redis does not.
"""

import json
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx
import pytest
import redis

from flexiai_django.testing.redis_server import RedisServer, free_port, make_tls_files
from flexiai_django.testing.servers import ServerProcess

from .conftest import BREAKER, chat, local_state, site_env, wait_until_every_worker

pytestmark = [pytest.mark.slow]

# README: "Redis with TLS and ACLs". Keys: the breaker store and rate limiter
# (flexiai:*), django-redis (:1:*, its default KEY_PREFIX and version), channels-redis (asgi*).
ACL_RULE = ("flexiai on >{password} resetkeys ~flexiai:* ~:1:* ~asgi* resetchannels -@all "
            "+ping +hello +time +get +set +del +exists +expire +pexpire "
            "+mget +hget +hmget +hgetall +hvals +hset +hdel +hincrby +hkeys +sadd +smembers "
            "+zadd +zrange +zrangebyscore +zscore "
            "+zrem +zcard +zcount +zpopmin +bzpopmin +zremrangebyscore +eval +evalsha "
            "+script|load +multi +exec")
PASSWORD = secrets.token_urlsafe(16)
# The answer cache and the rate limiter on: their commands must pass the ACL too.
FLEXIAI = {"CACHE_ENABLED": True, "ANONYMOUS_RATE_LIMIT_PER_MINUTE": 100_000}


def tls_supported():
    """Debian's redis-server is built with TLS; some builds are not. One built with it
    refuses these (missing) certificate files at once: "Failed to configure TLS"."""
    binary = shutil.which("redis-server")
    if binary is None:
        return False
    try:
        probe = subprocess.run([binary, "--port", "0", "--tls-port", str(free_port()),
                                "--tls-cert-file", "/nonexistent", "--tls-key-file",
                                "/nonexistent", "--save", ""],
                               capture_output=True, text=True, timeout=5)
    except subprocess.TimeoutExpired:  # it started: the TLS options were ignored
        return False
    return "configure TLS" in probe.stdout + probe.stderr


@pytest.fixture(scope="module")
def tls_redis():
    if shutil.which("openssl") is None or not tls_supported():
        hint = "needs openssl and a redis-server built with TLS (apt-get install -y openssl " \
               "redis-server)"
        if os.environ.get("CI"):
            pytest.fail(hint)
        pytest.skip(hint)
    tls = make_tls_files(Path(tempfile.mkdtemp(prefix="flexiai-tls-")))
    admin_password = secrets.token_urlsafe(16)
    with RedisServer(password=admin_password, tls=tls,
                     users=[ACL_RULE.format(password=PASSWORD)]) as server:
        yield server


def tls_env(seeded, url):
    env = {**site_env(seeded, redis_url=url), "DJANGO_SETTINGS_MODULE": "flexiai_site.settings"}
    return {**env, "FLEXIAI_JSON": json.dumps({**json.loads(env["FLEXIAI_JSON"]), **FLEXIAI})}


def test_the_app_serves_and_shares_breakers_over_tls_as_the_acl_user(
        seeded, tls_redis, _fake_upstream_server):
    url = tls_redis.user_url("flexiai", PASSWORD)
    admin = redis.Redis.from_url(tls_redis.url)
    with ServerProcess("uvicorn", tls_env(seeded, url), workers=2) as server:
        try:
            assert all(status == 200 for status, _ in (chat(server.url) for _ in range(5)))
            health = httpx.get(f"{server.url}/health", timeout=10).json()
            assert health["redis_connected"] is True and health["answer_cache_ok"] is True
            _fake_upstream_server.set_fault("demo-primary", status=500)
            for _ in range(8):
                assert chat(server.url)[0] == 200  # the fallback answers
        finally:
            _fake_upstream_server.set_fault("demo-primary", status=None)
        # Both workers hold the shared state (re-read from Redis, or heard on the channel
        # layer: both over TLS as the ACL user).
        wait_until_every_worker(server.url, 2, lambda view: local_state(view) == "open")
        body = httpx.get(f"{server.url}/circuit-breakers", timeout=10).json()
        output = server.output()
    assert body["breakers"][BREAKER]["state"] == "open"
    # Written under the ACL user, in the TLS server itself.
    assert admin.exists(f"flexiai:breaker:{{{BREAKER}}}")
    assert admin.acl_log() == [], admin.acl_log()  # no command was refused
    for trouble in ("unreachable", "NOPERM", "lost Redis", "failing"):
        assert trouble not in output, output[-3000:]
    assert PASSWORD not in output


def refused_start(seeded, url, kind="uvicorn"):
    server = ServerProcess(kind, tls_env(seeded, url), workers=1)
    with pytest.raises(RuntimeError, match="exited at start") as failed:
        server.start(timeout=30)
    server.stop()
    return str(failed.value)


@pytest.mark.parametrize("kind", ["uvicorn", "gunicorn-sync", "daphne"])
def test_a_wrong_password_stops_the_server_with_a_clear_message(seeded, tls_redis, kind):
    output = refused_start(seeded, tls_redis.user_url("flexiai", "not-the-password"), kind)
    assert "flexiai.E070" in output and "refused our credentials" in output, output
    assert "flexiai:***@127.0.0.1" in output
    if kind != "daphne":
        assert "Worker failed to boot" in output
    assert "not-the-password" not in output


def test_a_certificate_from_another_ca_stops_the_server_with_a_clear_message(
        seeded, tls_redis):
    other = make_tls_files(Path(tempfile.mkdtemp(prefix="flexiai-other-ca-")))
    output = refused_start(seeded, tls_redis.user_url("flexiai", PASSWORD, ca=other.ca))
    assert "flexiai.E070" in output and "certificate verification" in output, output
    assert PASSWORD not in output


def test_an_unreachable_redis_at_start_still_starts_degraded(seeded, tls_redis):
    url = tls_redis.user_url("flexiai", PASSWORD).replace(str(tls_redis.port),
                                                          str(free_port()))
    with ServerProcess("uvicorn", tls_env(seeded, url), workers=1) as server:
        health = httpx.get(f"{server.url}/health", timeout=10).json()
        assert chat(server.url)[0] == 200
        output = server.output()
    assert health["redis_connected"] is False
    assert "unreachable at start" in output and "E070" not in output
