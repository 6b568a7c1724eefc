"""A worker's view of the shared breakers (breakers/snapshots.py), on an injected clock."""

from flexiai_django.breakers.snapshots import Snapshots
from flexiai_django.breakers.state import BreakerState, State


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_snapshot_is_fresh_for_max_age_then_only_the_latest():
    clock = Clock()
    view = Snapshots(clock)
    view.put("b", BreakerState(state=State.OPEN, version=3))
    clock.now += 0.9
    assert view.fresh("b", max_age=1.0).state is State.OPEN
    clock.now += 0.2
    assert view.fresh("b", max_age=1.0) is None
    assert view.latest("b").version == 3


def test_a_broadcast_is_taken_only_when_newer():
    view = Snapshots(Clock())
    assert view.offer("b", BreakerState(version=2))
    assert not view.offer("b", BreakerState(state=State.OPEN, version=2))
    assert view.offer("b", BreakerState(state=State.OPEN, version=3))
    assert view.all()["b"].state is State.OPEN


def test_a_read_loses_only_to_a_newer_state_that_arrived_while_it_was_on_the_wire():
    clock = Clock()
    view = Snapshots(clock)
    view.put("b", BreakerState(state=State.FORCED_OPEN, version=9))  # before the read
    clock.now += 0.1
    started = clock()
    assert view.take_read("b", BreakerState(version=1), started).version == 1
    clock.now += 0.1
    view.offer("b", BreakerState(state=State.OPEN, version=5))  # during the next read
    assert view.take_read("b", BreakerState(version=4), started + 0.05).state is State.OPEN


def test_after_an_outage_only_open_states_are_kept_as_seeds_and_stale():
    view = Snapshots(Clock())
    view.keep_only_seeds({"open": BreakerState(state=State.OPEN, version=2),
                          "closed": BreakerState(version=7),
                          "never_shared": BreakerState(state=State.OPEN, version=0)})
    assert view.seeded() == {"open"}
    assert view.fresh("open", max_age=3600) is None
    assert '"state":"open"' in view.seed("open")
    assert view.seed("closed") == ""
