"""One reachability flag per Redis server: the rules, with an injected clock and no threads."""

import logging

import pytest
import redis
from django_redis.exceptions import ConnectionInterrupted

from flexiai_django.redis_outage import RedisOutage
from flexiai_django.redis_reach import ServerReach, server_name, unreachable
from flexiai_django.testing.clock import FakeClock


class Probe:
    """Stands in for the PING (its outcome is the test's to choose); ``spawned`` holds the
    probes started, run when the test says so, as the background thread would."""

    def __init__(self):
        self.answers = False
        self.calls = 0
        self.spawned = []

    def __call__(self):
        self.calls += 1
        if not self.answers:
            raise redis.TimeoutError("Timeout reading from socket")

    def run_spawned(self):
        spawned = list(self.spawned)
        self.spawned.clear()  # the same list: the server holds its append
        for probe in spawned:
            probe()


@pytest.fixture
def reach():
    clock, probe = FakeClock(), Probe()
    server = ServerReach("127.0.0.1:6379", probe, every=0.5, clock=clock,
                         spawn=probe.spawned.append)
    return server, clock, probe


def test_a_timeout_keeps_every_caller_off_until_a_background_probe_finds_it_back(
        reach, caplog):
    server, clock, probe = reach
    assert server.may_call()
    with caplog.at_level(logging.WARNING, logger="flexiai_django"):
        assert server.failed(redis.TimeoutError())
        assert server.failed(redis.TimeoutError())  # the others waiting at the freeze
        assert not server.up
        assert [server.may_call() for _ in range(100)] == [False] * 100
        assert probe.spawned == [], "no probe inside the back-off"
        clock.advance(0.5)
        assert [server.may_call() for _ in range(100)] == [False] * 100
        assert len(probe.spawned) == 1, "one probe at a time, never on the caller's thread"
        probe.run_spawned()  # still frozen
        assert not server.may_call() and probe.spawned == []
        clock.advance(0.5)
        assert not server.may_call() and len(probe.spawned) == 1
        probe.answers = True
        probe.run_spawned()
        assert server.up and server.may_call()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["Redis at 127.0.0.1:6379 is not answering (TimeoutError); this process "
                     "stays off it and tries a PING every 0.5 s",
                     "Redis at 127.0.0.1:6379 answers again"]


@pytest.mark.parametrize(("error", "counts"), [
    (redis.TimeoutError(), True),
    (redis.ConnectionError("Error 111 connecting"), True),
    (ConnectionRefusedError(), True),
    (redis.exceptions.OutOfMemoryError("OOM"), False),  # an answer: each part's own matter
    (redis.exceptions.ReadOnlyError("READONLY"), False),
    (redis.BusyLoadingError("LOADING"), False),
    (redis.AuthenticationError("WRONGPASS"), False),
    (ValueError("not Redis"), False),
])
def test_only_silence_makes_a_server_unreachable(error, counts, reach):
    server, _, _ = reach
    assert unreachable(error) is counts
    assert server.failed(error) is counts
    assert server.up is not counts


def test_a_wrapped_timeout_counts_as_django_redis_raises_it():
    try:
        try:
            raise redis.TimeoutError()
        except redis.TimeoutError as exc:
            raise ConnectionInterrupted(connection=None) from exc
    except ConnectionInterrupted as wrapped:
        assert unreachable(wrapped)


def test_a_component_on_an_unreachable_server_goes_local_at_once_and_back_after_its_probe(
        reach, caplog):
    server, clock, probe = reach
    outage = RedisOutage("store lost Redis (%s)", "store back", 1.0, clock=clock)
    outage.attach(server)
    other = RedisOutage("limiter lost Redis (%s)", "limiter back", 1.0, clock=clock)
    other.attach(server)
    with caplog.at_level(logging.WARNING, logger="flexiai_django"):
        outage.failed(redis.TimeoutError())
        assert not other.connected, "the other user knows without a timeout of its own"
        assert not other.retry_due and not other.retry_due
        probe.answers = True
        clock.advance(1.0)
        assert not other.retry_due  # starts the PING, in the background
        probe.run_spawned()
        assert other.retry_due and outage.retry_due
        assert other.claim_probe() and not other.claim_probe()
        assert other.succeeded() and other.connected
    lines = [r.getMessage() for r in caplog.records]
    assert lines.count("limiter lost Redis (TimeoutError)") == 1
    assert lines.count("store lost Redis (TimeoutError)") == 1
    assert lines.count("limiter back") == 1


def test_a_server_is_named_without_its_password():
    client = redis.Redis.from_url("redis://user:s3cret@10.0.0.5:6380/2")
    assert server_name(client) == "10.0.0.5:6380"
    assert server_name(redis.Redis(unix_socket_path="/run/redis.sock")) == "unix:/run/redis.sock"
