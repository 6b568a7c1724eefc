"""The breaker's rules, driven by an explicit clock: no sleeps, no I/O."""

import pytest

from flexiai_django.breakers import state as rules
from flexiai_django.breakers.state import BreakerConfig, BreakerState, State

CFG = BreakerConfig(failure_threshold=3, success_threshold=2, open_seconds=10,
                    max_open_seconds=25, jitter=0.0, half_open_max_calls=1, probe_ttl=5)
MID = 0.5  # rand value that applies no jitter


def fail(s: BreakerState, now: float, *, probe: bool = False) -> BreakerState:
    return rules.record_failure(s, CFG, now, MID, probe=probe, error="timeout")


def trip(s: BreakerState | None = None, now: float = 0.0) -> BreakerState:
    s = s or BreakerState()
    for _ in range(CFG.failure_threshold):
        s = fail(s, now)
    return s


def test_a_new_breaker_is_closed_and_admits_calls():
    admission = rules.acquire(BreakerState(), CFG, now=0)
    assert admission.allowed and not admission.probe
    assert admission.state.state is State.CLOSED


def test_failures_below_the_threshold_keep_it_closed():
    s = fail(fail(BreakerState(), 0), 1)
    assert s.state is State.CLOSED and s.failures == 2


def test_the_threshold_of_consecutive_failures_opens_it():
    s = trip(now=100)
    assert s.state is State.OPEN
    assert s.opened_at == 100 and s.retry_at == 110
    assert s.openings == 1


def test_a_success_resets_the_consecutive_count():
    s = fail(fail(BreakerState(), 0), 0)
    s = rules.record_success(s, CFG, 0, probe=False)
    s = fail(fail(s, 0), 0)
    assert s.state is State.CLOSED and s.failures == 2


def test_a_failure_streak_starting_or_ending_is_a_new_version():
    s = fail(BreakerState(), 0)
    assert s.version == 1
    assert fail(s, 1).version == 1
    s = rules.record_success(s, CFG, 2, probe=False)
    assert (s.failures, s.version) == (0, 2)
    assert rules.record_success(s, CFG, 3, probe=False).version == 2


def test_every_transition_is_a_new_version():
    versions = [trip(now=0).version]
    admission = rules.acquire(trip(now=0), CFG, now=10)
    versions.append(admission.state.version)
    versions.append(fail(admission.state, 11, probe=True).version)
    assert versions == sorted(set(versions))


def test_open_rejects_with_the_time_left():
    admission = rules.acquire(trip(now=0), CFG, now=4)
    assert not admission.allowed
    assert admission.retry_after == pytest.approx(6)


def test_first_call_after_the_open_period_becomes_a_half_open_probe():
    admission = rules.acquire(trip(now=0), CFG, now=10)
    assert admission.allowed and admission.probe and admission.transitioned
    assert admission.state.state is State.HALF_OPEN
    assert admission.state.version == trip(now=0).version + 1


def test_half_open_admits_only_max_calls_probes():
    first = rules.acquire(trip(now=0), CFG, now=10)
    second = rules.acquire(first.state, CFG, now=11)
    assert not second.allowed
    assert second.retry_after == pytest.approx(4)  # first probe's reservation ends at 15


def test_an_abandoned_probe_reservation_expires():
    first = rules.acquire(trip(now=0), CFG, now=10)
    later = rules.acquire(first.state, CFG, now=15.1)
    assert later.allowed and later.probe


def test_success_threshold_probe_successes_close_it():
    s = rules.acquire(trip(now=0), CFG, now=10).state
    s = rules.record_success(s, CFG, 10.5, probe=True)
    assert s.state is State.HALF_OPEN
    s = rules.acquire(s, CFG, now=11).state
    s = rules.record_success(s, CFG, 11.5, probe=True)
    assert s.state is State.CLOSED
    assert s.failures == 0 and s.openings == 0 and s.probes == ()


def test_a_failed_probe_reopens_for_longer():
    s = rules.acquire(trip(now=0), CFG, now=10).state
    s = fail(s, 10.5, probe=True)
    assert s.state is State.OPEN
    assert s.openings == 2
    assert s.retry_at == pytest.approx(10.5 + 20)


def test_the_open_period_grows_with_openings_and_is_capped():
    assert [CFG.open_period(n, MID) for n in (1, 2, 3, 4)] == [10, 20, 25, 25]


@pytest.mark.parametrize(("rand", "expected"), [(0.0, 9.0), (1.0, 11.0)])
def test_jitter_spreads_the_open_period(rand, expected):
    cfg = BreakerConfig(open_seconds=10, jitter=0.1)
    assert cfg.open_period(1, rand) == pytest.approx(expected)


def test_late_results_do_not_move_an_open_breaker():
    s = trip(now=0)
    assert rules.record_success(s, CFG, 1, probe=False) == s
    assert fail(s, 1).state is State.OPEN
    assert fail(s, 1).version == s.version


def test_forced_open_rejects_until_reset():
    s = rules.force(BreakerState(), State.FORCED_OPEN, now=0)
    assert not rules.acquire(s, CFG, now=10_000).allowed
    s = rules.force(s, State.CLOSED, now=1)
    assert rules.acquire(s, CFG, now=1).allowed


def test_disabled_admits_everything_and_records_nothing():
    s = rules.force(trip(now=0), State.DISABLED, now=1)
    admission = rules.acquire(s, CFG, now=1)
    assert admission.allowed and not admission.recorded
    assert fail(s, 2) == s


def test_every_override_bumps_the_version():
    s = BreakerState()
    versions = []
    for to in (State.FORCED_OPEN, State.DISABLED, State.CLOSED):
        s = rules.force(s, to, now=0)
        versions.append(s.version)
    assert versions == [1, 2, 3]


def test_reset_clears_counters_but_keeps_totals():
    s = rules.force(trip(now=0), State.CLOSED, now=1)
    assert (s.state, s.failures, s.openings) == (State.CLOSED, 0, 0)
    assert s.total_failures == 3


def test_releasing_a_probe_frees_its_slot():
    s = rules.acquire(trip(now=0), CFG, now=10).state
    s = rules.release(s, probe=True)
    assert rules.acquire(s, CFG, now=10).allowed


def test_forcing_half_open_is_refused():
    with pytest.raises(ValueError, match="half_open"):
        rules.force(BreakerState(), State.HALF_OPEN, now=0)


def test_state_round_trips_through_a_dict():
    s = rules.acquire(trip(now=0), CFG, now=10).state
    assert BreakerState.from_dict(s.to_dict()) == s


def test_active_probe_successes_close_an_open_breaker_at_the_success_threshold():
    s = rules.record_active_probe(trip(now=0), CFG, 1.0, ok=True)
    assert (s.state, s.successes, s.active_probes, s.last_probe) == (State.OPEN, 1, 1, "ok")
    s = rules.record_active_probe(s, CFG, 1.5, ok=True)
    assert (s.state, s.openings, s.retry_at, s.changed_at) == (State.CLOSED, 0, None, 1.5)
    assert rules.acquire(s, CFG, now=1.6).allowed


def test_a_failed_active_probe_keeps_the_open_period_and_restarts_the_success_streak():
    opened = trip(now=0)
    s = rules.record_active_probe(opened, CFG, 1.0, ok=True)
    s = rules.record_active_probe(s, CFG, 2.0, ok=False, error="server_error")
    assert (s.state, s.retry_at, s.openings, s.successes) == (State.OPEN, 10, 1, 0)
    assert (s.last_error, s.last_failure_at, s.last_probe_at) == ("server_error", 2.0, 2.0)
    assert s.version == opened.version + 2


@pytest.mark.parametrize("state", [State.HALF_OPEN, State.FORCED_OPEN, State.DISABLED,
                                   State.CLOSED])
def test_an_active_probe_is_ignored_unless_the_breaker_is_open(state):
    s = BreakerState(state=state, version=7)
    assert rules.record_active_probe(s, CFG, 1.0, ok=True) is s
    assert rules.record_active_probe(s, CFG, 1.0, ok=False) is s
# -- cooldown (a provider's Retry-After) ---------------------------------------------------


def test_a_cooldown_refuses_every_call_until_it_ends_and_says_how_long():
    s = rules.cool_down(BreakerState(), CFG, now=100, seconds=5)
    assert (s.state, s.cooldown_until, s.failures) == (State.CLOSED, 105, 0)
    refused = rules.acquire(s, CFG, now=101)
    assert not refused.allowed and refused.cooling_down
    assert refused.retry_after == 4 and refused.refusal == "cooling_down"
    assert not rules.available(s, CFG, now=104.9)
    assert rules.acquire(s, CFG, now=105).allowed and rules.available(s, CFG, now=105)


def test_a_cooldown_is_a_new_version_but_not_a_failure():
    s = rules.cool_down(BreakerState(), CFG, now=0, seconds=5)
    assert s.version == 1 and (s.failures, s.total_failures, s.last_error) == (0, 0, None)


def test_a_cooldown_is_capped_at_the_longest_open_period():
    assert rules.cool_down(BreakerState(), CFG, now=0, seconds=3600).cooldown_until == 25


def test_a_cooldown_extends_but_never_shortens():
    s = rules.cool_down(BreakerState(), CFG, now=0, seconds=10)
    assert rules.cool_down(s, CFG, now=1, seconds=2) is s
    assert rules.cool_down(s, CFG, now=1, seconds=20).cooldown_until == 21


def test_a_cooldown_holds_back_a_half_open_probe_too():
    s = rules.cool_down(trip(now=0), CFG, now=9, seconds=5)
    refused = rules.acquire(s, CFG, now=11)
    assert not refused.allowed and refused.cooling_down and refused.retry_after == 3
    assert rules.acquire(s, CFG, now=14).probe


def test_admin_overrides_win_over_a_cooldown():
    disabled = rules.force(BreakerState(), State.DISABLED, now=0)
    assert rules.cool_down(disabled, CFG, now=0, seconds=5) is disabled
    cooling = rules.cool_down(BreakerState(), CFG, now=0, seconds=5)
    assert rules.acquire(rules.force(cooling, State.DISABLED, now=1), CFG, now=1).allowed
    assert rules.force(cooling, State.CLOSED, now=1).cooldown_until is None


def test_the_end_of_a_failure_streak_drops_a_spent_cooldown_only():
    s = rules.cool_down(fail(BreakerState(), 0), CFG, now=0, seconds=5)
    assert rules.record_success(s, CFG, now=3, probe=False).cooldown_until == 5
    assert rules.record_success(s, CFG, now=6, probe=False).cooldown_until is None


def test_a_cooldown_round_trips_through_a_dict():
    s = rules.cool_down(BreakerState(), CFG, now=0, seconds=5)
    assert s.to_dict()["cooldown_until"] == 5
    assert BreakerState.from_dict(s.to_dict()) == s
