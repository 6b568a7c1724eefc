"""Each worker's window of recent attempts per provider, as the status page adds them up."""

from flexiai_django.recent_calls import FIRST_TOKEN_SAMPLES, MAX_SAMPLES, Stats
from flexiai_django.testing.clock import FakeClock


def test_a_summary_counts_successes_and_latency_per_provider():
    stats = Stats(clock=FakeClock())
    stats.record("primary", True, 10.0)
    stats.record("primary", False, 30.0)
    stats.record("backup", True, 5.0)
    assert stats.summary(60) == {
        "primary": {"count": 2, "ok": 1, "latency_ms_sum": 40.0, "latency_ms_max": 30.0},
        "backup": {"count": 1, "ok": 1, "latency_ms_sum": 5.0, "latency_ms_max": 5.0},
    }


def test_attempts_older_than_the_window_drop_out():
    clock = FakeClock()
    stats = Stats(clock=clock)
    stats.record("primary", False, 100.0)
    clock.advance(30)
    stats.record("primary", True, 10.0)
    clock.advance(31)
    assert stats.summary(60)["primary"]["count"] == 1
    clock.advance(30)
    assert stats.summary(60) == {}


def test_memory_is_bounded_per_provider():
    stats = Stats(clock=FakeClock())
    for _ in range(MAX_SAMPLES + 50):
        stats.record("primary", True, 1.0)
    assert stats.summary(60)["primary"]["count"] == MAX_SAMPLES


def test_times_to_first_token_are_kept_per_provider_and_mode_and_bounded():
    stats = Stats(clock=FakeClock())
    for i in range(FIRST_TOKEN_SAMPLES + 5):
        stats.first_token("primary", float(i), streamed=True)
    stats.first_token("primary", 9.0, streamed=False)
    streamed = stats.first_token_times("primary", streamed=True)
    assert len(streamed) == FIRST_TOKEN_SAMPLES and streamed[-1] == FIRST_TOKEN_SAMPLES + 4
    assert stats.first_token_times("primary", streamed=False) == [9.0]
    assert stats.first_token_times("backup", streamed=True) == []
    stats.clear()
    assert stats.first_token_times("primary", streamed=True) == []
