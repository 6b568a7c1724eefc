"""The planner's decisions for rising, steady and falling load, on an injected clock."""

import pytest

from flexiai_django.capacity.config import planner_config
from flexiai_django.capacity.planner import REASONS, Decision, Planner, TierSignals
from flexiai_django.testing.clock import FakeClock

CONFIG = planner_config({"TIERS": {"large": {"LEAD_SECONDS": 180, "MIN": 1, "MAX": 8},
                                   "small": {"LEAD_SECONDS": 20, "MIN": 1, "MAX": 8}},
                         "COOLDOWN_SECONDS": 120})


@pytest.fixture
def clock():
    return FakeClock(1_000_000.0)


def load(inflight, replicas=2, per_replica=10, rate=None, **more):
    """A tier of ``replicas`` providers of ``per_replica`` slots each, ``inflight`` busy."""
    return TierSignals(request_rate=inflight / 2 if rate is None else rate, inflight=inflight,
                       capacity=replicas * per_replica, replicas=replicas, **more)


def one(planner, tier="small", **signals):
    return planner.decide({tier: load(**signals)})[tier]


def test_rising_load_scales_up_to_the_target_then_holds_steady(clock):
    """In-flight rises at a steady request rate (answers take longer)."""
    planner = Planner(CONFIG, clock)
    assert one(planner, inflight=8, rate=9).action == "hold"    # 0.40: steady
    clock.advance(15)
    up = one(planner, inflight=18, rate=9)                      # 0.90 > 0.8
    assert (up.action, up.current, up.desired, up.reason) == ("scale_up", 2, 3, "busy")
    assert up.desired == 3  # ceil(2 × 0.9 / 0.6)
    clock.advance(30)                                           # past small's 20 s lead
    steady = one(planner, inflight=18, replicas=3, rate=9)      # 0.60
    assert (steady.action, steady.desired, steady.reason) == ("hold", 3, "steady")


def test_a_big_jump_asks_for_several_replicas_at_once_within_max(clock):
    planner = Planner(CONFIG, clock)
    decision = one(planner, inflight=20, replicas=2)            # 1.0
    assert (decision.action, decision.desired) == ("scale_up", 4)
    decision = one(planner, "large", inflight=70, replicas=7)
    assert (decision.action, decision.desired) == ("scale_up", 8)  # MAX
    assert one(planner, "large", inflight=80, replicas=8).reason == "at_max"


def test_no_second_scale_up_before_the_first_s_lead_time_has_passed(clock):
    planner = Planner(CONFIG, clock)
    assert one(planner, "large", inflight=19).action == "scale_up"
    clock.advance(120)   # the new large replica is still loading (180 s)
    held = one(planner, "large", inflight=19)
    assert (held.action, held.reason) == ("hold", "cooling_down")
    clock.advance(61)
    assert one(planner, "large", inflight=19).action == "scale_up"


def test_falling_load_gives_back_one_replica_per_cool_down(clock):
    planner = Planner(CONFIG, clock)
    first = one(planner, inflight=4, replicas=4)               # 0.10 < 0.3
    assert (first.action, first.desired, first.reason) == ("scale_down", 3, "idle")
    clock.advance(60)
    held = one(planner, inflight=3, replicas=3)
    assert (held.action, held.reason) == ("hold", "cooling_down")
    clock.advance(61)
    assert one(planner, inflight=3, replicas=3).desired == 2
    clock.advance(121)
    assert (one(planner, inflight=1, replicas=1).reason) == "at_min"


def test_hysteresis_between_the_thresholds_nothing_moves(clock):
    planner = Planner(CONFIG, clock)
    for inflight in (7, 12, 15, 8, 15):                         # 0.35 … 0.75
        decision = one(planner, inflight=inflight, rate=4)
        assert (decision.action, decision.reason) == ("hold", "steady")
        clock.advance(15)


def test_a_scale_up_is_not_held_by_a_scale_down_s_cool_down(clock):
    planner = Planner(CONFIG, clock)
    assert one(planner, inflight=2, replicas=3).action == "scale_down"
    clock.advance(15)
    assert one(planner, inflight=19, replicas=2).action == "scale_up"


def test_a_long_lead_time_scales_up_earlier_on_the_same_rising_load(clock):
    """Same load for both tiers: rate 5 → 6 requests/s in 15 s, utilisation 0.6."""
    planner = Planner(CONFIG, clock)
    planner.decide({"large": load(10, rate=5), "small": load(10, rate=5)})
    clock.advance(15)
    decided = planner.decide({"large": load(12, rate=6), "small": load(12, rate=6)})
    assert (decided["large"].action, decided["large"].reason) == ("scale_up", "busy_soon")
    assert decided["large"].projected == pytest.approx(1.2)   # growth capped at 2x
    assert decided["large"].desired == 4                       # ceil(2 × 1.2 / 0.6)
    assert decided["small"].action == "hold"                   # 6 + 20 s × 1/15 per s
    assert decided["small"].projected == pytest.approx(0.6 * (6 + 20 / 15) / 6)


def test_bounds_are_enforced_first(clock):
    planner = Planner(CONFIG, clock)
    low = one(planner, "large", inflight=0, replicas=0, rate=0)
    assert (low.action, low.desired, low.reason) == ("scale_up", 1, "below_min")
    high = one(planner, inflight=10, replicas=10)
    assert (high.action, high.desired, high.reason) == ("scale_down", 8, "above_max")


def test_an_outage_is_not_load(clock):
    planner = Planner(CONFIG, clock)
    decision = one(planner, inflight=20, open_breakers=2)
    assert (decision.action, decision.reason) == ("hold", "tier_down")


def test_overflow_and_slow_first_tokens_scale_up(clock):
    config = planner_config({"TIERS": {"small": {"FIRST_TOKEN_P95_SECONDS": 2.0}}})
    planner = Planner(config, clock)
    assert one(planner, inflight=10, overflow_rate=1.0, rate=5).reason == "overflowing"
    clock.advance(30)
    slow = one(planner, inflight=10, first_token_p95=3.5, rate=5)
    assert (slow.action, slow.desired, slow.reason) == ("scale_up", 3, "slow_first_token")


def test_replicas_still_warming_hold_a_scale_up(clock):
    planner = Planner(CONFIG, clock)
    decision = one(planner, inflight=19, warming=1)
    assert (decision.action, decision.reason) == ("hold", "warming")


def test_without_capacity_the_request_rate_per_replica_measures_utilisation(clock):
    config = planner_config({"TIERS": {"small": {"REQUESTS_PER_REPLICA": 5}}})
    planner = Planner(config, clock)
    s = TierSignals(request_rate=9.0, inflight=3, capacity=None, replicas=2)
    assert planner.decide({"small": s})["small"].reason == "busy"          # 0.9
    s = TierSignals(request_rate=9.0, inflight=3, capacity=None, replicas=2)
    assert Planner(CONFIG, clock).decide({"small": s})["small"].reason == "no_figures"


def test_unmeasured_load_is_no_reason_to_scale_down_but_bounds_still_hold(clock):
    planner = Planner(CONFIG, clock)
    held = one(planner, inflight=0, replicas=4, load_known=False)
    assert (held.action, held.reason) == ("hold", "no_figures")
    assert one(planner, inflight=0, replicas=9, load_known=False).reason == "above_max"


def test_a_restored_planner_keeps_the_cool_down_of_the_stored_decision(clock):
    first = Planner(CONFIG, clock)
    stored = [Decision.from_dict(d.to_dict()) for d in first.decide(
        {"large": load(19)}).values()]
    clock.advance(60)
    restarted = Planner(CONFIG, clock)
    restarted.restore(stored)
    assert restarted.decide({"large": load(19)})["large"].reason == "cooling_down"


def test_every_reason_is_a_known_label(clock):
    planner = Planner(CONFIG, clock)
    for inflight in range(0, 25, 3):
        for decision in planner.decide({"small": load(inflight)}).values():
            assert decision.reason in REASONS
            assert decision.tier in decision.describe()
        clock.advance(7)
