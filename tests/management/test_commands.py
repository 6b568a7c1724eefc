"""The operations commands against real Redis (db from REDIS_URL) and the fake upstream:
``flexiai_status``, ``flexiai_reset`` and ``flexiai_probe``."""

import json
import os
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from flexiai_django.breakers import get_store
from flexiai_django.breakers.state import BreakerConfig, State
from flexiai_django.models import ENV_NAME_REFUSED

pytestmark = pytest.mark.django_db
CFG = BreakerConfig()


def run(*args):
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def trip(name):
    for _ in range(CFG.failure_threshold):
        get_store().record(f"llm:{name}", CFG, success=False, probe=False, error="server_error")
    assert get_store().get(f"llm:{name}").state is State.OPEN


def test_status_shows_each_provider_and_its_shared_breaker(make_provider):
    make_provider("primary", priority=1, api_key="sk-never-printed")
    make_provider("backup", kind="anthropic", priority=2)
    make_provider("spare", priority=3, enabled=False)
    make_provider("bad", priority=4, api_key_env="DJANGO_SECRET_KEY")
    trip("primary")
    text = run("flexiai_status")
    lines = text.splitlines()
    assert lines[0].split()[:6] == ["NAME", "KIND", "MODEL", "PRIORITY", "ENABLED",
                                    "CIRCUIT_STATE"]
    assert lines[1].split()[:7] == ["primary", "openai", "primary-model", "1", "True", "open",
                                    str(CFG.failure_threshold)]
    assert lines[2].split()[:6] == ["backup", "anthropic", "backup-model", "2", "True",
                                    "closed"]
    assert lines[3].split() == ["spare", "openai", "spare-model", "3", "False", "-", "-",
                                "-", "-", "-", "-", "-"]  # ... tier, capacity, in flight
    assert lines[4].split()[:6] == ["bad", "openai", "bad-model", "4", "True", "-"]
    assert lines[4].endswith(f"MISCONFIGURED: {ENV_NAME_REFUSED}")
    assert os.environ["DJANGO_SECRET_KEY"] not in text
    assert "redis connected: yes" in text
    assert "sk-never-printed" not in text


def test_status_json_is_one_object_for_machines(make_provider):
    make_provider("primary", api_key="sk-never-printed")
    trip("primary")
    text = run("flexiai_status", "--json")
    report = json.loads(text)
    assert set(report) >= {"providers", "redis_connected", "store", "active_probe_seconds"}
    (primary,) = report["providers"]
    assert (primary["circuit_state"], primary["enabled"]) == ("open", True)
    assert primary["retry_at"] is not None and primary["misconfigured"] is None
    assert report["redis_connected"] is True
    assert "sk-never-printed" not in text


def test_reset_closes_an_open_breaker_in_the_shared_store(make_provider):
    make_provider("primary")
    trip("primary")
    assert run("flexiai_reset", "primary").strip() == "primary: breaker closed"
    assert get_store().get("llm:primary").state is State.CLOSED


def test_reset_all_closes_every_breaker(make_provider):
    make_provider("a", priority=1)
    make_provider("b", priority=2)
    trip("a")
    get_store().force("llm:b", State.FORCED_OPEN)
    assert run("flexiai_reset", "--all").splitlines() == ["a: breaker closed",
                                                          "b: breaker closed"]
    assert {get_store().get(f"llm:{n}").state for n in "ab"} == {State.CLOSED}


def test_reset_of_an_unknown_provider_fails_and_resets_nothing(make_provider):
    make_provider("primary")
    trip("primary")
    with pytest.raises(CommandError, match=r"No provider named 'nope' \(known: primary\)"):
        run("flexiai_reset", "primary", "nope")
    assert get_store().get("llm:primary").state is State.OPEN
    with pytest.raises(CommandError, match="--all"):
        run("flexiai_reset")


def test_probe_ok_prints_latency_and_sends_one_call(make_provider, fake_upstream):
    make_provider("primary")
    text = run("flexiai_probe", "primary")
    assert text.startswith("primary (openai primary-model): ok in ")
    assert "ms" in text and "not recorded in the breaker" in text
    assert fake_upstream.hits("primary") == 1


def test_probe_failure_exits_1_with_the_error_kind_and_leaves_the_breaker(
        make_provider, fake_upstream):
    make_provider("primary")
    fake_upstream.set_fault("primary", status=500)
    with pytest.raises(CommandError, match=r"primary .*: failed in \d+ ms, error server_error"):
        run("flexiai_probe", "primary")
    state = get_store().get("llm:primary")
    assert (state.state, state.failures, state.last_error) == (State.CLOSED, 0, None)


def test_probe_of_an_unknown_or_misconfigured_provider_says_why(make_provider):
    make_provider("primary")
    make_provider("bad", api_key_env="DJANGO_SECRET_KEY")
    with pytest.raises(CommandError, match=r"No enabled provider named 'nope' \(enabled: primary"):
        run("flexiai_probe", "nope")
    with pytest.raises(CommandError, match=f"bad is misconfigured: {ENV_NAME_REFUSED}"):
        run("flexiai_probe", "bad")


def test_status_shows_requests_in_flight_per_provider_and_tier(make_provider):
    from flexiai_django import inflight

    make_provider("large", priority=1, tier="large", capacity=2)
    make_provider("small", priority=2, tier="small")
    inflight.get_slots().clear()
    try:
        inflight.get_slots().acquire("large", 2)
        inflight.get_slots().acquire("small", None)
        inflight.get_slots().acquire("small", None)
        report = json.loads(run("flexiai_status", "--json"))
        rows = {p["name"]: p for p in report["providers"]}
        assert (rows["large"]["in_flight"], rows["large"]["capacity"]) == (1, 2)
        assert (rows["small"]["in_flight"], rows["small"]["capacity"]) == (2, None)
        assert report["tiers"] == [
            {"tier": "large", "in_flight": 1, "capacity": 2, "warming": False},
            {"tier": "small", "in_flight": 2, "capacity": None, "warming": False}]
        text = run("flexiai_status")
        assert text.splitlines()[0].split()[-3:] == ["TIER", "CAPACITY", "IN_FLIGHT"]
        assert "tier large: 1 / 2 in flight" in text
        assert "tier small: 2 (uncapped) in flight" in text
    finally:
        inflight.get_slots().clear()
