"""Routing strategies: the order a new session's request tries an alias's providers.

Pure (no I/O): the inputs are the providers in priority order (:func:`ordering.order`),
the deployment's in-flight counts and the recent latencies, read by
:mod:`flexiai_django.route`. Each strategy only reorders; the walk still skips open
breakers and full providers and falls through to the cache and degraded tiers.

* ``priority``: the order as given.
* ``least-busy``: lowest in-flight share of capacity first; a provider without a capacity
  by its raw in-flight count. Ties keep the priority order.
* ``latency``: lowest recent latency (a stream's time to first token) first; providers
  with no recent figures lead, so they get measured. Ties keep the priority order.
* ``overflow``: the first tier of ``OVERFLOW_TIERS`` that is not full takes the request
  (its providers least-busy first), then the other tiers in their order, then providers
  of no listed tier. A tier is full once its in-flight reaches ``OVERFLOW_AT`` of its
  capacity (a tier with an uncapped provider is never full), or, with
  ``OVERFLOW_WHILE_WARMING``, while one of its providers is warming.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

PRIORITY, LEAST_BUSY, LATENCY, OVERFLOW = "priority", "least-busy", "latency", "overflow"
#: Strategies that need the deployment's in-flight counts (so their requests hold slots).
COUNTED = frozenset({LEAST_BUSY, OVERFLOW})


class Routable(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def tier(self) -> str: ...
    @property
    def capacity(self) -> int | None: ...
    @property
    def warming(self) -> bool: ...


P = TypeVar("P", bound=Routable)


def strategy_for(model: str | None, routing: Mapping[str, str]) -> str:
    """The strategy of the alias ``model`` names (``priority`` when none is set)."""
    return routing.get(model, PRIORITY) if model else PRIORITY


def busy(provider: Routable, counts: Mapping[str, int]) -> float:
    """In-flight share of capacity; the raw count for a provider without a capacity."""
    inflight = counts.get(provider.name, 0)
    return inflight / provider.capacity if provider.capacity else float(inflight)


def least_busy(providers: Sequence[P], counts: Mapping[str, int]) -> list[P]:
    return sorted(providers, key=lambda p: busy(p, counts))


def fastest(providers: Sequence[P], latencies: Mapping[str, float]) -> list[P]:
    return sorted(providers, key=lambda p: latencies.get(p.name, -1.0))


@dataclass(frozen=True)
class TierLoad:
    """One tier's providers, in flight and capacity (None: some provider is uncapped)."""

    tier: str
    inflight: int
    capacity: int | None
    warming: bool

    def full(self, at: float, while_warming: bool) -> bool:
        if while_warming and self.warming:
            return True
        return self.capacity is not None and self.inflight >= at * self.capacity


def tier_loads(providers: Sequence[Routable], counts: Mapping[str, int]) -> dict[str, TierLoad]:
    """Per tier label (providers without one left out): its load."""
    members: dict[str, list[Routable]] = {}
    for p in providers:
        if p.tier:
            members.setdefault(p.tier, []).append(p)
    loads = {}
    for tier, group in members.items():
        caps = [p.capacity for p in group]
        loads[tier] = TierLoad(
            tier, sum(counts.get(p.name, 0) for p in group),
            None if any(c is None for c in caps) else sum(c for c in caps if c is not None),
            any(p.warming for p in group))
    return loads


def open_tier(loads: Mapping[str, TierLoad], tiers: Sequence[str], at: float,
              while_warming: bool) -> str | None:
    """The first of ``tiers`` with providers that is not full, or None (all full)."""
    for tier in tiers:
        load = loads.get(tier)
        if load is not None and not load.full(at, while_warming):
            return tier
    return None


def overflow(providers: Sequence[P], counts: Mapping[str, int], tiers: Sequence[str],
             at: float, while_warming: bool) -> list[P]:
    """See the module doc. When every tier is full the tiers keep their order (the walk
    then finds a provider with a free slot, or falls through)."""
    target = open_tier(tier_loads(providers, counts), tiers, at, while_warming)
    rank = {t: i + 1 for i, t in enumerate(tiers)}
    if target is not None:
        rank[target] = 0
    return sorted(providers, key=lambda p: (rank.get(p.tier, len(tiers) + 1),
                                            busy(p, counts)))


def order(strategy: str, providers: Sequence[P], *, counts: Mapping[str, int],
          latencies: Mapping[str, float], tiers: Sequence[str], at: float = 1.0,
          while_warming: bool = True) -> list[P]:
    """``providers`` (priority order) in ``strategy``'s order."""
    if strategy == LEAST_BUSY:
        return least_busy(providers, counts)
    if strategy == LATENCY:
        return fastest(providers, latencies)
    if strategy == OVERFLOW:
        return overflow(providers, counts, tiers, at, while_warming)
    return list(providers)


def overflowed(tier: str, tiers: Sequence[str]) -> bool:
    """Whether a request served by ``tier`` spilled past the first tier it prefers."""
    return bool(tiers) and tier in tiers and tier != tiers[0]
