"""The planner's signals, per tier, from the deployment's shared state.

:func:`tier_signals` adds up per-provider figures into :class:`~.planner.TierSignals`
(pure); :func:`read` gathers them: the provider table (tiers, capacities, warming), the
breaker store's states (Redis: the truth for every worker), in-flight counts and
per-tier request and overflow counts from the load source, and every worker's times to
first token (:mod:`flexiai_django.first_tokens`, pooled into a p95 per provider).

The load source is deployment-wide in-flight accounting (:mod:`flexiai_django.inflight`:
``counts()`` per provider, ``tier_activity(window)`` per tier). That counts an overflow on
the tier that *took* the request; the planner wants it on the tiers it was sent on *past*
(the full ones that should grow): :func:`spilled_past` turns one into the other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from flexiai_django.breakers.state import BreakerState, State
from flexiai_django.capacity.config import PlannerConfig
from flexiai_django.capacity.planner import TierSignals
from flexiai_django.providers.base import ProviderConfig

#: Breaker states that keep a provider from serving: its capacity is not counted.
DOWN = frozenset({State.OPEN, State.HALF_OPEN, State.FORCED_OPEN})


class TierLoad(Protocol):
    """Requests a tier served in the window, and those sent on because it was full."""

    @property
    def requests(self) -> int: ...

    @property
    def overflows(self) -> int: ...


class LoadSource(Protocol):
    def counts(self) -> Mapping[str, int]: ...

    def tier_activity(self, window: float) -> Mapping[str, TierLoad]: ...


class NoLoad:
    """No in-flight accounting in this build: no load figures."""

    def counts(self) -> Mapping[str, int]:
        return {}

    def tier_activity(self, window: float) -> Mapping[str, TierLoad]:
        return {}


@dataclass(frozen=True)
class Load:
    requests: int = 0
    overflows: int = 0


def spilled_past(taken: Mapping[str, TierLoad], order: Sequence[str]) -> dict[str, Load]:
    """Per tier, the requests it served and those sent on past it because it was full.

    ``taken`` counts an overflow on the tier that took it; a request taken by the third
    tier of ``order`` was sent past the first and the second.
    """
    found = {tier: Load(load.requests, 0) for tier, load in taken.items()}
    for i, tier in enumerate(order):
        past = sum(taken[later].overflows for later in order[i + 1:] if later in taken)
        found[tier] = Load(found.get(tier, Load()).requests, past)
    return found


class InflightLoad:
    """:mod:`flexiai_django.inflight`, its overflows moved to the tiers they passed."""

    def counts(self) -> Mapping[str, int]:
        from flexiai_django import inflight

        return inflight.counts()

    def tier_activity(self, window: float) -> Mapping[str, TierLoad]:
        from flexiai_django import inflight
        from flexiai_django.conf import get_settings

        return spilled_past(inflight.tier_activity(window), get_settings().OVERFLOW_TIERS)


def load_source() -> LoadSource:
    """Deployment-wide in-flight accounting."""
    return InflightLoad()


def tier_signals(providers: Iterable[ProviderConfig], *, inflight: Mapping[str, int],
                 activity: Mapping[str, TierLoad], states: Mapping[str, BreakerState],
                 first_token: Mapping[str, float], window: float,
                 tiers: Iterable[str] = (), load_known: bool = True) -> dict[str, TierSignals]:
    """Per tier (providers with no tier are not planned): replicas are its providers,
    capacity the sum over those neither warming nor behind a breaker that is not closed
    (None when none of them has a capacity), first-token p95 the slowest provider's."""
    members: dict[str, list[ProviderConfig]] = {tier: [] for tier in tiers}
    for provider in providers:
        if provider.tier:
            members.setdefault(provider.tier, []).append(provider)
    found: dict[str, TierSignals] = {}
    for tier, group in members.items():
        down = [p for p in group if states.get(p.breaker_name, BreakerState()).state in DOWN]
        usable = [p for p in group if p not in down and not p.warming]
        capacities = [p.capacity for p in usable if p.capacity is not None]
        load = activity.get(tier)
        slow = [first_token[p.name] for p in group if p.name in first_token]
        found[tier] = TierSignals(
            request_rate=(load.requests / window) if load else 0.0,
            inflight=sum(inflight.get(p.name, 0) for p in group),
            capacity=sum(capacities) if capacities else None,
            replicas=len(group),
            overflow_rate=(load.overflows / window) if load else 0.0,
            first_token_p95=max(slow) if slow else None,
            open_breakers=len(down),
            warming=sum(1 for p in group if p.warming),
            load_known=load_known,
        )
    return found


def _no_first_tokens() -> Mapping[str, float]:
    return {}


@dataclass
class Sources:
    """Where :func:`read` looks; each is a callable so tests can hand in their own."""

    providers: Callable[[], Iterable[ProviderConfig]]
    states: Callable[[], Mapping[str, BreakerState]]
    load: LoadSource = field(default_factory=load_source)
    #: Per provider, the p95 time to first token in seconds, deployment-wide.
    first_token: Callable[[], Mapping[str, float]] = _no_first_tokens


def default_sources() -> Sources:
    """The provider table (this process's short-lived cache), the shared store, and
    every worker's times to first token (:mod:`flexiai_django.first_tokens`)."""
    from flexiai_django import first_tokens
    from flexiai_django.breakers import get_store
    from flexiai_django.provider_cache import get_providers

    return Sources(providers=get_providers, states=lambda: get_store().all(),
                   first_token=first_tokens.p95s)


def read(config: PlannerConfig, sources: Sources) -> dict[str, TierSignals]:
    """One reading of every planned tier."""
    return tier_signals(sources.providers(), inflight=sources.load.counts(),
                        activity=sources.load.tier_activity(config.window_seconds),
                        states=sources.states(), first_token=sources.first_token(),
                        window=config.window_seconds, tiers=config.planned,
                        load_known=not isinstance(sources.load, NoLoad))

