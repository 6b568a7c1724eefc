"""Routing strategies: pure orderings of an alias's providers (no Redis, no clock)."""

from dataclasses import dataclass

import pytest

from flexiai_django import strategies
from flexiai_django.strategies import LATENCY, LEAST_BUSY, OVERFLOW, PRIORITY


@dataclass(frozen=True)
class P:
    name: str
    tier: str = ""
    capacity: int | None = None
    warming: bool = False


def names(providers):
    return [p.name for p in providers]


def route(strategy, providers, counts=None, latencies=None, at=1.0, while_warming=True):
    return names(strategies.order(strategy, providers, counts=counts or {},
                                  latencies=latencies or {}, tiers=["large", "small"],
                                  at=at, while_warming=while_warming))


def test_an_alias_without_a_strategy_routes_by_priority():
    assert strategies.strategy_for("auto", {}) == PRIORITY
    assert strategies.strategy_for(None, {"auto": OVERFLOW}) == PRIORITY
    assert strategies.strategy_for("auto", {"auto": OVERFLOW}) == OVERFLOW


def test_priority_keeps_the_order_whatever_the_load():
    chain = [P("a", capacity=1), P("b")]
    assert route(PRIORITY, chain, counts={"a": 5}) == ["a", "b"]


def test_least_busy_compares_in_flight_shares_of_capacity():
    chain = [P("a", capacity=10), P("b", capacity=2), P("c", capacity=4)]
    # a: 6/10, b: 1/2, c: 1/4
    assert route(LEAST_BUSY, chain, counts={"a": 6, "b": 1, "c": 1}) == ["c", "b", "a"]


def test_least_busy_takes_raw_counts_for_uncapped_providers_and_keeps_priority_on_ties():
    chain = [P("a"), P("b"), P("c", capacity=2)]
    assert route(LEAST_BUSY, chain, counts={"a": 3, "b": 1}) == ["c", "b", "a"]
    assert route(LEAST_BUSY, chain, counts={}) == ["a", "b", "c"]


def test_latency_puts_the_fastest_first_and_the_unmeasured_before_them():
    chain = [P("slow"), P("fast"), P("new")]
    assert route(LATENCY, chain, latencies={"slow": 900.0, "fast": 120.0}) == [
        "new", "fast", "slow"]


LARGE = P("large-1", tier="large", capacity=2)
SMALL = P("small-1", tier="small", capacity=8)
UNTIERED = P("other")


@pytest.mark.parametrize(("large_in_flight", "first"), [
    (0, "large-1"), (1, "large-1"), (2, "small-1"), (3, "small-1")])
def test_overflow_goes_to_the_small_tier_exactly_when_the_large_one_is_full(
        large_in_flight, first):
    chain = [SMALL, UNTIERED, LARGE]
    order = route(OVERFLOW, chain, counts={"large-1": large_in_flight})
    assert order[0] == first
    assert order[-1] == "other"  # no listed tier: last


def test_overflow_comes_back_as_the_large_tier_frees():
    chain = [LARGE, SMALL]
    assert route(OVERFLOW, chain, counts={"large-1": 2})[0] == "small-1"
    assert route(OVERFLOW, chain, counts={"large-1": 1})[0] == "large-1"


def test_a_tiers_capacity_is_its_providers_together():
    chain = [P("l1", "large", 2), P("l2", "large", 2), SMALL]
    assert route(OVERFLOW, chain, counts={"l1": 2, "l2": 1}) == ["l2", "l1", "small-1"]
    assert route(OVERFLOW, chain, counts={"l1": 2, "l2": 2})[0] == "small-1"


def test_overflow_at_a_share_of_capacity():
    chain = [P("l", "large", 10), SMALL]
    assert route(OVERFLOW, chain, counts={"l": 7}, at=0.8)[0] == "l"
    assert route(OVERFLOW, chain, counts={"l": 8}, at=0.8)[0] == "small-1"


def test_an_uncapped_tier_never_overflows():
    chain = [P("l", "large"), SMALL]
    assert route(OVERFLOW, chain, counts={"l": 1000})[0] == "l"


def test_a_warming_tier_counts_as_full_when_over_provisioning():
    chain = [P("l", "large", 4, warming=True), SMALL]
    assert route(OVERFLOW, chain)[0] == "small-1"
    assert route(OVERFLOW, chain, while_warming=False)[0] == "l"


def test_when_every_tier_is_full_the_tiers_keep_their_order():
    chain = [SMALL, LARGE]
    assert route(OVERFLOW, chain, counts={"large-1": 2, "small-1": 8}) == ["large-1", "small-1"]


def test_tier_loads():
    loads = strategies.tier_loads([LARGE, SMALL, UNTIERED, P("s2", "small")],
                                  {"large-1": 1, "small-1": 3, "s2": 1})
    assert loads["large"] == strategies.TierLoad("large", 1, 2, False)
    assert loads["small"] == strategies.TierLoad("small", 4, None, False)
    assert set(loads) == {"large", "small"}


def test_an_overflow_is_a_request_served_past_the_first_tier():
    assert not strategies.overflowed("large", ["large", "small"])
    assert strategies.overflowed("small", ["large", "small"])
    assert not strategies.overflowed("medium", ["large", "small"])
