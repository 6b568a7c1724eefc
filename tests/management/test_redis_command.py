"""``flexiai_redis`` against the suite's Redis, and throwaway redis-servers (never the shared
one) made to refuse writes or stopped."""

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from flexiai_django.redis_credentials import redacted
from flexiai_django.testing.redis_server import RedisServer, end_oom, start_oom

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "never-printed-7f3a"


@pytest.fixture(scope="module")
def throwaway():
    with RedisServer(password=PASSWORD) as server:
        yield server


def run(*args):
    out = StringIO()
    call_command("flexiai_redis", *args, stdout=out)
    return out.getvalue()


def also_check(settings, url):
    """One more Redis in the settings: a channel layer on ``url``."""
    settings.CHANNEL_LAYERS = {**settings.CHANNEL_LAYERS, "extra": {
        "BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [url]}}}


def test_every_configured_redis_answers_with_its_details():
    report = json.loads(run("--json"))
    assert report["ok"] is True
    targets = [r["target"] for r in report["redis"]]
    assert targets[0].startswith("cache 'default' at redis://")
    assert any(t.startswith("channel layer 'default'") for t in targets)
    for r in report["redis"]:
        assert r["ok"] and r["writable"] and r["error"] is None
        assert 0 < r["ping_ms"] < 1000
        assert r["version"].count(".") == 2 and r["used_memory"]
        assert r["maxmemory_policy"]
    lines = run().splitlines()
    assert lines and all(line.startswith("ok      ") for line in lines)
    assert "writes ok" in lines[0]


def test_a_redis_that_refuses_writes_fails_the_check(settings, throwaway):
    also_check(settings, throwaway.url)
    import redis

    admin = redis.Redis.from_url(throwaway.url)
    start_oom(admin)
    try:
        out = StringIO()
        with pytest.raises(CommandError, match="1 of 3 Redis checks failed"):
            call_command("flexiai_redis", stdout=out)
    finally:
        end_oom(admin)
        admin.close()
    (line,) = [x for x in out.getvalue().splitlines() if x.startswith("FAILED")]
    assert "channel layer 'extra'" in line and "OutOfMemoryError" in line
    assert PASSWORD not in out.getvalue() and redacted(throwaway.url) in line


def test_a_stopped_redis_fails_the_check_and_exits_1():
    with RedisServer(password=PASSWORD) as stopped:
        stopped.stop()
    env = {**os.environ, "REDIS_URL": stopped.url, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    done = subprocess.run([sys.executable, "manage.py", "flexiai_redis"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stderr
    assert "FAILED  cache 'default' at redis://:***@127.0.0.1" in done.stdout
    assert "ConnectionError" in done.stdout
    assert "Redis checks failed" in done.stderr
    assert PASSWORD not in done.stdout + done.stderr
