"""Per-provider figures added up into each tier's signals."""

from dataclasses import dataclass

import pytest

from flexiai_django.breakers.state import BreakerState, State
from flexiai_django.capacity import readings
from flexiai_django.capacity.config import planner_config
from flexiai_django.capacity.readings import NoLoad, Sources, tier_signals
from flexiai_django.providers.base import ProviderConfig


def provider(name, tier, capacity=None, warming=False):
    return ProviderConfig(name=name, kind="openai", base_url="http://127.0.0.1:9/v1",
                          model="m", tier=tier, capacity=capacity, warming=warming)


@dataclass
class Activity:
    requests: int
    overflows: int


PROVIDERS = [provider("l1", "large", 10), provider("l2", "large", 10),
             provider("l3", "large", 10, warming=True), provider("s1", "small", 20),
             provider("s2", "small"), provider("untiered", "")]


def test_a_tier_adds_up_its_providers_load_and_usable_capacity():
    found = tier_signals(
        PROVIDERS, inflight={"l1": 7, "l2": 3, "s1": 4, "untiered": 9},
        activity={"large": Activity(120, 30)},
        states={"llm:l2": BreakerState(state=State.OPEN)},
        first_token={"l1": 0.8, "l2": 2.5}, window=60, tiers=["gpu"])
    assert set(found) == {"large", "small", "gpu"}
    large = found["large"]
    assert (large.inflight, large.capacity, large.replicas) == (10, 10, 3)  # l2 open, l3 warming
    assert (large.request_rate, large.overflow_rate) == (2.0, 0.5)
    assert (large.open_breakers, large.warming, large.first_token_p95) == (1, 1, 2.5)
    small = found["small"]
    assert (small.inflight, small.capacity, small.replicas, small.request_rate) == (4, 20, 2, 0)
    assert found["gpu"].replicas == 0 and found["gpu"].capacity is None


def test_without_in_flight_accounting_the_load_is_marked_unknown():
    sources = Sources(providers=lambda: PROVIDERS, states=dict, load=NoLoad())
    found = readings.read(planner_config({}), sources)
    assert found["large"].capacity == 30 - 10 and not found["large"].load_known


def test_an_overflow_counts_against_every_tier_it_was_sent_past():
    taken = {"large": readings.Load(10, 0), "medium": readings.Load(4, 3),
             "small": readings.Load(6, 5)}
    found = readings.spilled_past(taken, ["large", "medium", "small"])
    assert found == {"large": readings.Load(10, 8), "medium": readings.Load(4, 5),
                     "small": readings.Load(6, 0)}


@pytest.mark.django_db
def test_the_planner_reads_real_in_flight_slots_and_overflows(make_provider, settings):
    """Slots held through the in-flight module are what the planner sees for the tier."""
    from flexiai_django import inflight

    make_provider("big", tier="large", capacity=2)
    make_provider("fast", tier="small", capacity=8)
    settings.FLEXIAI = {**settings.FLEXIAI, "ROUTING": {"auto": "overflow"}}
    slots = inflight.get_slots()
    held = [slots.acquire("big", 2, "large"), slots.acquire("big", 2, "large"),
            slots.acquire("fast", 8, "small", overflowed=True)]
    try:
        found = readings.read(planner_config({}), readings.default_sources())
    finally:
        for slot in held:
            if slot is not None:
                slots.release(slot)
    assert (found["large"].inflight, found["large"].capacity) == (2, 2)
    assert found["large"].overflow_rate > 0 and found["small"].overflow_rate == 0
    assert found["large"].load_known
