"""The planner as a service against real Redis: decisions stored, shown by flexiai_status,
on /metrics and on the status page's socket, and the hook called for changes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.core.management import call_command
from django.test import override_settings
from prometheus_client.parser import text_string_to_metric_families

from flexiai_django import status_page
from flexiai_django.capacity import outputs
from flexiai_django.capacity.readings import Sources
from flexiai_django.capacity.service import Service
from flexiai_django.provider_cache import get_providers
from flexiai_django.testing.clock import FakeClock

ROOT = Path(__file__).resolve().parents[2]
hooked: list = []


def record_hook(decision):
    hooked.append(decision)


@pytest.fixture(autouse=True)
def fresh_decisions():
    outputs.decisions_store().clear()
    hooked.clear()
    yield
    outputs.decisions_store().clear()


def planner(settings, **options):
    return override_settings(FLEXIAI={**settings.FLEXIAI, "CAPACITY_PLANNER": {
        "HOOK": "tests.capacity.test_service.record_hook", **options}})


def run(*args):
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_once_decides_records_calls_the_hook_and_status_shows_it(make_provider, settings,
                                                                 client):
    make_provider("big", tier="large", capacity=4)
    make_provider("fast", tier="small", capacity=8)
    with planner(settings, TIERS={"large": {"MIN": 2, "MAX": 4}}):
        report = json.loads(run("flexiai_capacity", "--once", "--json"))
        decided = {d["tier"]: d for d in report["decisions"]}
        assert (decided["large"]["action"], decided["large"]["desired"],
                decided["large"]["reason"]) == ("scale_up", 2, "below_min")
        small = decided["small"]["reason"]
        assert (decided["small"]["action"], small) == ("hold", "at_min")
        assert [(d.tier, d.desired) for d in hooked] == [("large", 2)]  # changes only
        status = run("flexiai_status")
    line = next(x for x in status.splitlines() if x.startswith("capacity planner:"))
    assert "large: scale_up 1 -> 2 (below_min: 1 replicas, MIN is 2)" in line
    assert f"small: hold 1 ({small}" in line and " s ago" in line
    families = {f.name: f for f in text_string_to_metric_families(
        client.get("/metrics").content.decode())}
    desired = {s.labels["tier"]: s.value for s in families["flexiai_capacity_desired"].samples}
    assert desired == {"large": 2.0, "small": 1.0}
    current = {(s.labels["tier"], s.labels["action"], s.labels["reason"])
               for s in families["flexiai_capacity_decision"].samples if s.value == 1}
    assert current == {("large", "scale_up", "below_min"), ("small", "hold", small)}


@pytest.mark.django_db
def test_a_dry_run_records_nothing_and_calls_no_hook(make_provider, settings):
    make_provider("big", tier="large")
    with planner(settings, TIERS={"large": {"MIN": 3}}):
        text = run("flexiai_capacity", "--once", "--dry-run")
        assert text.strip().startswith("large: scale_up 1 -> 3 (below_min")
        assert hooked == [] and outputs.last_decisions() == {}
        assert "no decision yet" in run("flexiai_status")


@pytest.mark.django_db
def test_no_tiers_says_so(make_provider, settings):
    make_provider("plain")
    with planner(settings):
        assert "No tiers to plan" in run("flexiai_capacity", "--once")


@dataclass
class Activity:
    requests: int
    overflows: int = 0


class Load:
    """Deployment-wide load as the in-flight module reports it, set by the test."""

    def __init__(self):
        self.inflight, self.requests = {}, {}

    def counts(self):
        return self.inflight

    def tier_activity(self, window):
        return {tier: Activity(n) for tier, n in self.requests.items()}


@pytest.mark.django_db
def test_the_service_follows_rising_and_falling_load_and_a_restart_keeps_its_cool_down(
        make_provider, settings):
    for name in ("s1", "s2"):
        make_provider(name, tier="small", capacity=10)
    load, clock = Load(), FakeClock(1_700_000_000.0)
    with planner(settings, TIERS={"small": {"MIN": 1, "MAX": 6}}, COOLDOWN_SECONDS=120):
        sources = Sources(providers=get_providers, states=dict, load=load)
        service = Service(sources=sources, clock=clock)
        load.inflight, load.requests = {"s1": 4, "s2": 4}, {"small": 240}
        assert service.once()["small"].reason == "steady"            # 0.40
        clock.advance(15)
        load.inflight = {"s1": 10, "s2": 9}                           # 0.95
        up = service.once()["small"]
        assert (up.action, up.desired, up.reason) == ("scale_up", 4, "busy")
        assert [d.desired for d in hooked] == [4]
        clock.advance(30)
        load.inflight = {"s1": 1, "s2": 0}                            # 0.05
        held = service.once()["small"]
        assert (held.action, held.reason) == ("hold", "cooling_down")
        restarted = Service(sources=sources, clock=clock)             # from Redis
        clock.advance(15)
        assert restarted.once()["small"].reason == "cooling_down"
        clock.advance(120)
        down = restarted.once()["small"]
        assert (down.action, down.desired, down.reason) == ("scale_down", 1, "idle")
    assert outputs.last_decisions()["small"] == down


@pytest.mark.django_db(transaction=True)
def test_the_status_page_gets_the_last_decisions_and_each_new_one(make_provider, settings):
    from channels.routing import URLRouter
    from channels.testing import WebsocketCommunicator
    from django.contrib.auth.models import User

    from flexiai_django.routing import STATUS_SOCKET_PATH, websocket_urlpatterns

    make_provider("big", tier="large", capacity=4)
    with planner(settings, TIERS={"large": {"MIN": 2}}):
        Service().once()
        snapshot = async_to_sync(status_page.snapshot)()
        assert [(d["tier"], d["desired"]) for d in snapshot["capacity"]] == [("large", 2)]
        staff = User.objects.create_superuser("boss", "boss@example.com", "pw")

        async def watch():
            socket = WebsocketCommunicator(URLRouter(websocket_urlpatterns),
                                           "/" + STATUS_SOCKET_PATH)
            socket.scope["user"] = staff
            assert (await socket.connect(timeout=5))[0]
            from asgiref.sync import sync_to_async

            await sync_to_async(Service(restore=False).once)()
            while True:
                message = await socket.receive_json_from(timeout=5)
                if message["type"] == "capacity":
                    await socket.disconnect()
                    return message

        event = async_to_sync(watch)()
    assert [(d["tier"], d["action"]) for d in event["decisions"]] == [("large", "scale_up")]


def test_the_page_lists_the_last_decision_per_tier():
    from tests.test_status_page import RENDER, SCRIPT

    node = __import__("shutil").which("node")
    if node is None:
        pytest.skip("node is not installed")
    decision = {"tier": "large", "action": "scale_up", "current": 1, "desired": 2,
                "reason": "busy", "detail": "utilisation 0.95 > 0.8", "at": 0}
    messages = [{"type": "snapshot", "server_time": 0, "stale_after": 70, "worker": "w",
                 "active_probe_seconds": None, "window": 60, "stats": {}, "providers": [],
                 "transitions": [], "store": {"backend": "x", "shared": False},
                 "capacity": []},
                {"type": "capacity", "decisions": [decision]},
                {"type": "capacity", "decisions": [{**decision, "tier": "small",
                                                    "action": "hold", "reason": "steady"}]}]
    done = subprocess.run([node, str(RENDER), str(SCRIPT), "capacity"],
                          input=json.dumps(messages), capture_output=True, text=True,
                          timeout=30, check=True)
    shown = json.loads(done.stdout)
    assert shown[0].startswith("large: scale up 1 → 2 (busy: utilisation 0.95 > 0.8) at ")
    assert shown[1].startswith("small: hold 1 (steady: ")


def test_sigterm_ends_the_service_cleanly(tmp_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
           "FLEXIAI_DB": str(tmp_path / "db.sqlite3")}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env,
                   check=True, timeout=120)
    service = subprocess.Popen([sys.executable, "manage.py", "flexiai_capacity"], cwd=ROOT,
                               env=env, stderr=subprocess.PIPE, text=True)
    try:
        started = time.monotonic()
        seen = ""
        while "capacity planner started" not in seen:
            assert time.monotonic() - started < 60 and service.poll() is None, seen
            seen += service.stderr.readline()
        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=20) == 0
        assert "capacity planner stopped" in service.stderr.read()
    finally:
        if service.poll() is None:
            service.kill()


@pytest.mark.django_db
def test_a_dead_redis_costs_the_planner_its_record_not_its_decisions(make_provider, settings,
                                                                    caplog):
    from flexiai_django.testing.redis_server import RedisServer

    make_provider("big", tier="large", capacity=4)
    with RedisServer() as gone:
        gone.stop()
    store = {"BACKEND": "flexiai_django.breakers.redis_store.RedisBreakerStore",
             "OPTIONS": {"url": gone.url}}
    with override_settings(FLEXIAI={**settings.FLEXIAI, "BREAKER_STORE": store,
                                    "CAPACITY_PLANNER": {"TIERS": {"large": {"MIN": 2}}}}):
        started = time.monotonic()
        decided = Service(sources=Sources(providers=get_providers, states=dict,
                                          load=Load())).once()
        assert decided["large"].reason == "below_min"
        assert "capacity decisions not stored (ConnectionError)" in caplog.text
        assert outputs.last_decisions() == {}
        assert "no decision yet" in run("flexiai_status")
        assert time.monotonic() - started < 5
