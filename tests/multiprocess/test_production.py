"""The demo settings as servers run them: no debug page by default, W003 at start.

Servers here load ``flexiai_site.settings`` itself (not the suite's ``tests.settings``,
which silences W003) and inherit this process's DJANGO_SECRET_KEY.
"""

import secrets

import httpx
import pytest

from flexiai_django.testing.redis_server import RedisServer
from flexiai_django.testing.servers import ServerProcess

from .conftest import site_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db]
DEMO_SETTINGS = {"DJANGO_SETTINGS_MODULE": "flexiai_site.settings"}


def test_an_unknown_path_is_a_plain_404_without_the_redis_password(seeded, monkeypatch):
    """No DJANGO_DEBUG anywhere: the default must not be the technical page."""
    monkeypatch.delenv("DJANGO_DEBUG", raising=False)  # the server inherits this environment
    password = secrets.token_hex(16)
    with RedisServer(password=password) as redis:
        env = {**site_env(seeded, redis_url=redis.url), **DEMO_SETTINGS}
        del env["DJANGO_DEBUG"]
        with ServerProcess("uvicorn", env, workers=1) as server:
            health = httpx.get(f"{server.url}/health", timeout=10).json()
            assert health["redis_connected"] is True  # the URL with the password is used
            response = httpx.get(f"{server.url}/no/such/page", timeout=10)
            output = server.output()
    assert response.status_code == 404
    for leak in ("URLconf", "Traceback", password, "DEBUG = True", "technical_404"):
        assert leak not in response.text
    assert "Not Found" in response.text
    assert password not in output


def start_count_stop(kind, tmp, **env):
    """Start ``kind`` with the demo settings, send requests, count the W003 lines.

    Lines that start with the id: those of the demo's ``flexiai_django`` handler. (daphne
    also configures the root logger, so it prints every flexiai_django record a second
    time with a timestamp; that copy is daphne's, not a second warning.)
    """
    env = {**site_env(tmp), **DEMO_SETTINGS, **env}
    with ServerProcess(kind, env, workers=2) as server:
        with httpx.Client(timeout=10) as client:
            for _ in range(10):
                assert client.get(f"{server.url}/health/live",
                                  headers={"connection": "close"}).status_code == 200
        output = server.output()
    lines = output.splitlines()
    return sum(line.startswith("flexiai.W003: ") for line in lines), output


KINDS = {"uvicorn": 2, "gunicorn-sync": 2, "daphne": 1}  # processes that load the app


@pytest.mark.parametrize("kind", KINDS)
def test_servers_log_the_anonymous_loopback_warning_at_start(seeded, kind):
    count, output = start_count_stop(kind, seeded, DJANGO_DEBUG="0",
                                     FLEXIAI_ANONYMOUS_LOOPBACK="1")
    # Once per process that loaded the app (a worker may not have started yet), not per
    # request; with the hint on the same line.
    assert 1 <= count <= KINDS[kind], output
    line = next(line for line in output.splitlines() if "flexiai.W003" in line)
    assert "ALLOW_ANONYMOUS_LOOPBACK" in line and "issue API keys" in line


@pytest.mark.parametrize("kind", KINDS)
def test_servers_stay_quiet_without_anonymous_loopback(seeded, kind):
    count, output = start_count_stop(kind, seeded, DJANGO_DEBUG="0",
                                     FLEXIAI_ANONYMOUS_LOOPBACK="0")
    assert count == 0 and "flexiai.W003" not in output, output
