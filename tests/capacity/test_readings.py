"""Per-provider figures added up into each tier's signals."""

from dataclasses import dataclass

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


def test_the_load_source_is_the_in_flight_module_when_the_build_has_one():
    source = readings.load_source()
    assert hasattr(source, "counts") and hasattr(source, "tier_activity")
