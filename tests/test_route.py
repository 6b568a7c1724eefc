"""The routing strategies' inputs: every worker's recent latencies, put together."""

import time

import pytest
from django.conf import settings
from django.test import override_settings

import flexiai_django
from flexiai_django import broadcast, recent_calls, route


def test_latencies_are_averaged_over_every_workers_calls():
    one = {"a": {"count": 3, "ok": 3, "latency_ms_sum": 300.0, "latency_ms_max": 120.0}}
    two = {"a": {"count": 1, "ok": 1, "latency_ms_sum": 500.0, "latency_ms_max": 500.0},
           "b": {"count": 2, "ok": 2, "latency_ms_sum": 100.0, "latency_ms_max": 60.0}}
    assert route.mean_latencies([one, two]) == {"a": 200.0, "b": 50.0}
    assert route.mean_latencies([]) == {}


@pytest.mark.django_db
def test_the_latency_strategy_reads_other_workers_broadcast_figures(make_provider):
    make_provider("slow", priority=1)
    make_provider("quick", priority=2)
    listener = broadcast.listener()
    assert listener is not None
    for _ in range(5):
        recent_calls.local().record("slow", True, 400.0)
    other = {"type": broadcast.STATS_EVENT, "worker": "elsewhere:1", "sent_at": time.time(),
             "stats": {"quick": {"count": 10, "ok": 10, "latency_ms_sum": 200.0,
                                 "latency_ms_max": 30.0},
                       "slow": {"count": 5, "ok": 5, "latency_ms_sum": 2000.0,
                                "latency_ms_max": 400.0}}}
    listener.handle(other)
    flexiai = {**settings.FLEXIAI, "MODEL_ALIASES": {"fast": None},
               "ROUTING": {"fast": "latency"}}
    try:
        with override_settings(FLEXIAI=flexiai):
            route.latencies_forget()
            found = route.latencies()
            assert (found["slow"], found["quick"]) == (400.0, 20.0)
            assert flexiai_django.chat("hi", model="fast").provider == "quick"
    finally:
        listener.worker_stats.pop("elsewhere:1", None)
        route.latencies_forget()
