"""Every worker's times to first token, pooled into one p95 per provider for the planner."""

from __future__ import annotations

import json
import logging
import time
from io import StringIO

import pytest
from django.core.management import call_command

import flexiai_django
from flexiai_django import broadcast, first_tokens, recent_calls
from flexiai_django.capacity import outputs, readings
from flexiai_django.capacity.config import planner_config
from flexiai_django.capacity.planner import REASONS
from flexiai_django.first_tokens import PLAIN, STREAMED, FirstTokenBoard, pooled_p95
from flexiai_django.testing.clock import FakeClock


def streams(provider, *seconds):
    return {STREAMED: {provider: list(seconds)}, PLAIN: {}}


def test_the_p95_is_over_every_workers_samples_together():
    busy = streams("a", *[0.1] * 95, *[3.0] * 5)  # 100 requests, 5 slow
    quiet = streams("a", 2.0, 2.0, 2.0)  # 3 slow requests, its own p95 is 2.0
    assert pooled_p95([busy, quiet]) == {"a": 2.0}  # 8 of 103 slow: the p95 is slow
    assert pooled_p95([busy]) == {"a": 0.1}
    assert pooled_p95([busy, streams("a", *[0.1] * 100)]) == {"a": 0.1}  # not max(3.0, 0.1)


def test_streams_first_then_plain_calls_and_none_from_a_few_samples():
    plain_only = {STREAMED: {}, PLAIN: {"b": [4.0] * 30, "a": [9.0] * 30}}
    assert pooled_p95([streams("a", *[0.5] * 30), plain_only]) == {"a": 0.5, "b": 4.0}
    assert pooled_p95([streams("a", *[5.0] * 19)]) == {}
    assert pooled_p95([streams("a", *[5.0] * 19), streams("a", 5.0)]) == {"a": 5.0}
    assert pooled_p95([]) == {}


def test_a_worker_shares_only_the_samples_of_the_window():
    clock = FakeClock()
    stats = recent_calls.Stats(clock)
    stats.first_token("a", 9.0, streamed=True)
    clock.advance(61)
    stats.first_token("a", 0.2, streamed=True)
    stats.first_token("b", 1.5, streamed=False)
    assert stats.first_tokens_since(60, streamed=True) == {"a": [0.2]}
    assert stats.first_tokens_since(60, streamed=False) == {"b": [1.5]}
    assert stats.first_token_times("a", streamed=True) == [9.0, 0.2]  # hedging's: all kept


@pytest.fixture
def board(settings):
    found = first_tokens.board()
    found.clear()
    outputs.decisions_store().clear()
    yield found
    found.clear()
    outputs.decisions_store().clear()


@pytest.mark.django_db
def test_the_planner_reads_two_workers_figures_and_ignores_a_stale_one(board, make_provider):
    make_provider("big", tier="large")
    make_provider("big2", tier="large")
    board.write("host-a:1", streams("big", *[0.2] * 30))
    board.write("host-b:2", streams("big", *[4.0] * 3) | {PLAIN: {"big2": [0.5] * 20}})
    an_hour_ago = int((time.time() - 3600) * 1000)
    board.write("host-c:3", streams("big", *[60.0] * 100), at_ms=an_hour_ago)
    assert first_tokens.p95s() == {"big": 4.0, "big2": 0.5}
    found = readings.read(planner_config({}), readings.default_sources())
    assert found["large"].first_token_p95 == 4.0  # the slower of its providers
    client = board._script.client
    assert set(client.hkeys(board.key)) == {b"host-a:1", b"host-b:2"}  # the stale one dropped
    assert 0 < client.pttl(board.key) <= first_tokens.horizon_seconds() * 1000


@pytest.mark.django_db
def test_a_worker_with_nothing_left_in_its_window_drops_out(board, make_provider):
    recent_calls.local().first_token("big", 3.0, streamed=True)
    board.share()
    assert board.workers() != []
    recent_calls.local().clear()
    board.share()
    assert board.workers() == []


@pytest.mark.django_db(transaction=True)
def test_streams_served_here_reach_the_planner_through_the_stats_loop(
        board, make_provider, fake_upstream, settings):
    """A real worker path: streamed calls, the broadcast listener's stats loop writing
    them, another worker's figures beside them, and ``flexiai_capacity --once --json``."""
    make_provider("slow", tier="large", timeout=10)
    fake_upstream.set_fault("slow", first_token_delay=0.06)
    settings.FLEXIAI = {**settings.FLEXIAI, "STATS_PUBLISH_SECONDS": 0.05,
                        "CAPACITY_PLANNER": {"TIERS": {"large": {
                            "FIRST_TOKEN_P95_SECONDS": 0.05}}}}
    assert broadcast.listener() is not None
    for _ in range(first_tokens.MIN_SAMPLES):
        stream = flexiai_django.stream("hello")
        assert "".join(stream) and stream.provider == "slow"
    board.write("elsewhere:1", streams("slow", *[0.01] * 10))
    deadline = time.monotonic() + 15
    while first_tokens.p95s().get("slow", 0) < 0.06 and time.monotonic() < deadline:
        time.sleep(0.05)
    out = StringIO()
    call_command("flexiai_capacity", "--once", "--json", stdout=out)
    decided = {d["tier"]: d for d in json.loads(out.getvalue())["decisions"]}
    large = decided["large"]
    assert (large["action"], large["reason"]) == ("scale_up", "slow_first_token")
    assert "slow_first_token" in REASONS and "p95 time to first token" in large["detail"]


def test_without_redis_nothing_is_written_and_a_read_is_this_processes(caplog, settings):
    recent_calls.local().clear()
    dead = FirstTokenBoard(url="redis://127.0.0.1:1/0", retry_seconds=60)
    for _ in range(25):
        recent_calls.local().first_token("a", 0.3, streamed=True)
    with caplog.at_level(logging.WARNING, logger="flexiai_django"):
        started = time.monotonic()
        dead.share()
        dead.share()
        assert dead.p95s() == {"a": 0.3}
        assert time.monotonic() - started < 2
    assert [r.getMessage() for r in caplog.records].count(
        "first-token figures lost Redis (ConnectionError); not shared until it is back") == 1
    recent_calls.local().clear()
