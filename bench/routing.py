"""What routing costs a request, per strategy: microseconds and Redis round trips.

For each row, one request's routing as the chain does it, N times: ``Walk.candidates``
(the alias's providers, in the strategy's order: the in-flight counts read for
``least-busy`` and ``overflow``, the recent latencies for ``latency``), then the in-flight
slot taken on the first provider and freed (only where a slot is needed: a provider with
a capacity, or a strategy that weighs in-flight counts). No provider is called. The
breaker store and the slots are on a throwaway ``redis-server`` started here.

Round trips are counted on the client: each ``send_packed_command`` of the benchmark's
thread is one (a pipeline is one); the slots' renewing thread is not counted (one call
per ``INFLIGHT_LEASE_SECONDS / 3`` per process, whatever the traffic). One ``PING`` is
timed for scale. Figures: the best of 5 repeats, µs per request.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from typing import Any

import _setup

REPEATS = 5
ROUTING = {"by-priority": "priority", "by-latency": "latency", "by-load": "least-busy",
           "by-tier": "overflow"}


class RoundTrips:
    """Counts the round trips this thread makes to Redis (a pipeline is one)."""

    def __init__(self) -> None:
        from redis.connection import AbstractConnection

        self.count = 0
        self._thread = threading.current_thread()
        original = AbstractConnection.send_packed_command
        counter = self

        def counted(conn: Any, command: Any, check_health: bool = True) -> None:
            if threading.current_thread() is counter._thread:
                counter.count += 1
            original(conn, command, check_health)

        AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]


def measure(route: Any, n: int, trips: RoundTrips) -> tuple[float, float]:
    """(best µs per request, round trips per request)."""
    route()  # warm: scripts loaded, clients built
    best = float("inf")
    per_request = 0.0
    for _ in range(REPEATS):
        before = trips.count
        started = time.perf_counter_ns()
        for _ in range(n):
            route()
        elapsed = time.perf_counter_ns() - started
        per_request = (trips.count - before) / n
        best = min(best, elapsed / n / 1000)
    return best, per_request


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5000, help="requests per measurement")
    parser.add_argument("--quick", action="store_true", help="N / 10")
    args = parser.parse_args(argv)
    n = max(100, args.n // 10) if args.quick else args.n

    os.environ.pop("REDIS_URL", None)  # a private redis-server, counted alone
    os.environ["FLEXIAI_JSON"] = json.dumps({
        "MODEL_ALIASES": {alias: None for alias in ROUTING}, "ROUTING": ROUTING,
        "ACTIVE_PROBE_SECONDS": None})
    upstream = _setup.setup(redis=True)
    _setup.print_header("routing decision per request", n=n, repeats=REPEATS)

    import redis

    from flexiai_django import inflight, recent_calls
    from flexiai_django.breakers import get_store
    from flexiai_django.chat_types import ChatRequest, Message
    from flexiai_django.models import Provider
    from flexiai_django.provider_cache import get_providers
    from flexiai_django.walk import Walk

    for name, priority, tier, capacity in (("large", 1, "large", 1000), ("small", 2, "small",
                                                                            4000),
                                           ("spare", 3, "", None)):
        _setup.make_provider(upstream, name, priority=priority)
        Provider.objects.filter(name=name).update(tier=tier, capacity=capacity)
    _setup.make_provider(upstream, "open-1", priority=1)
    _setup.make_provider(upstream, "open-2", priority=2)
    from flexiai_django import provider_cache

    provider_cache.invalidate()
    providers = get_providers()
    capped = {"large", "small", "spare"}
    tiered = tuple(p for p in providers if p.name in capped)
    uncapped = tuple(p for p in providers if p.name not in capped)
    for p in providers:
        for i in range(50):
            recent_calls.local().record(p.name, True, 100.0 + i + 10 * p.priority)
    assert get_store().describe()["shared"] and inflight.get_slots().shared

    def router(model: str, chain: tuple[Any, ...]) -> Any:
        request = ChatRequest((Message("user", "hi"),), model=model)

        def route() -> None:
            walk = Walk(request)
            first = walk.candidates(chain)[0]
            if not walk.slots.hold(first):
                raise AssertionError("at capacity")
            walk.slots.release_all()

        return route

    rows_spec = (
        ("priority, uncapped providers", "by-priority", uncapped),
        ("priority, providers with a capacity", "by-priority", tiered),
        ("latency, uncapped providers", "by-latency", uncapped),
        ("least-busy", "by-load", tiered),
        ("overflow (tiers large, small)", "by-tier", tiered),
    )
    trips = RoundTrips()
    rows = []
    for label, model, chain in rows_spec:
        micros, per_request = measure(router(model, chain), n, trips)
        rows.append((label, _setup.fmt(micros, 1), _setup.fmt(per_request, 2)))
    url = os.environ["REDIS_URL"]
    client = redis.Redis.from_url(url)
    client.ping()
    started = time.perf_counter_ns()
    for _ in range(1000):
        client.ping()
    ping = (time.perf_counter_ns() - started) / 1000 / 1000
    _setup.print_table("routing + in-flight slot, per request (sync)",
                       ["strategy", "µs / request", "Redis round trips / request"], rows)
    print(f"\none PING round trip on this machine: {ping:.1f} µs")


if __name__ == "__main__":
    main()
