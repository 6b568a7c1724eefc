"""Scale up, hold or scale down, per tier: a pure function of the signals, the clock and
the planner's memory of its last changes.

Utilisation is in-flight requests over the tier's usable capacity (providers neither
warming nor behind an open breaker), or the request rate over ``REQUESTS_PER_REPLICA`` ×
replicas when no provider of the tier has a capacity. The rules, in order:

* below ``MIN`` or above ``MAX`` replicas: go to the bound;
* every provider of the tier behind an open breaker: hold (an outage is not load);
* busy (utilisation above ``SCALE_UP_AT`` now, or projected over the tier's lead time
  from the request rate's trend), overflowing, or slow to the first token: scale up to
  reach ``TARGET_UTILISATION``, unless replicas are still warming or the last scale-up's
  lead time has not passed (they are not serving yet);
* idle (below ``SCALE_DOWN_AT`` now and projected): give back one replica, unless a
  change came within ``COOLDOWN_SECONDS``;
* otherwise hold. The gap between the two thresholds is the hysteresis.

A tier with a long lead time (a large model takes minutes to load) so scales up earlier
on rising load than one that is ready in seconds. Time is wall-clock seconds from an
injected clock, so decisions stored in Redis can restore a restarted planner's memory.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from flexiai_django.capacity.config import PlannerConfig, TierPolicy

Action = Literal["scale_up", "hold", "scale_down"]
ACTIONS: tuple[Action, ...] = ("scale_up", "hold", "scale_down")

#: Why a decision was taken: a closed set, fit for a metric label.
REASONS = ("below_min", "above_max", "tier_down", "busy", "busy_soon", "overflowing",
           "slow_first_token", "warming", "cooling_down", "at_max", "idle", "at_min",
           "steady", "no_figures")

#: Load is projected to grow at most this much over a lead time (one noisy interval must
#: not triple a tier).
MAX_PROJECTED_GROWTH = 2.0


@dataclass(frozen=True)
class TierSignals:
    """One tier's load, deployment-wide. ``capacity``: concurrent requests its usable
    providers take (None: no provider of the tier has one); ``replicas``: its enabled
    providers, warming ones included; ``overflow_rate``: requests a second sent on to the
    next tier because this one was full; ``first_token_p95``: seconds, None if unknown;
    ``load_known``: False when nothing measures the load (no in-flight accounting): the
    zeros are then no reason to scale down."""

    request_rate: float = 0.0
    inflight: int = 0
    capacity: int | None = None
    replicas: int = 0
    overflow_rate: float = 0.0
    first_token_p95: float | None = None
    open_breakers: int = 0
    warming: int = 0
    load_known: bool = True


@dataclass(frozen=True)
class Decision:
    """What the planner decided for a tier at ``at``; ``changed_at``/``change``: the
    tier's last scale-up or scale-down (this one, when it is one)."""

    tier: str
    action: Action
    current: int
    desired: int
    reason: str
    detail: str
    at: float
    utilisation: float | None = None
    projected: float | None = None
    request_rate: float = 0.0
    changed_at: float | None = None
    change: Action | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def describe(self) -> str:
        """One line for people (logs, ``flexiai_status``, ``--once``)."""
        move = (f"{self.current} -> {self.desired}" if self.action != "hold"
                else f"{self.current}")
        return f"{self.tier}: {self.action} {move} ({self.reason}: {self.detail})"


def _ratio(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}"


class Planner:
    """Decides for every tier of one reading; remembers the last changes and request
    rates (for cool-downs and the load's trend)."""

    def __init__(self, config: PlannerConfig,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._clock = clock
        self.last: dict[str, Decision] = {}

    def restore(self, decisions: Iterable[Decision]) -> None:
        """Start from decisions stored by an earlier run (its cool-downs still hold)."""
        for decision in decisions:
            self.last.setdefault(decision.tier, decision)

    def decide(self, signals: Mapping[str, TierSignals]) -> dict[str, Decision]:
        now = self._clock()
        decided = {tier: self._decide(tier, signals[tier], now) for tier in sorted(signals)}
        self.last.update(decided)
        return decided

    # -- one tier -------------------------------------------------------------------------

    def _utilisation(self, s: TierSignals, policy: TierPolicy) -> float | None:
        if s.capacity:
            return s.inflight / s.capacity
        if policy.requests_per_replica and s.replicas:
            return s.request_rate / (s.replicas * policy.requests_per_replica)
        return None

    def _projected(self, tier: str, s: TierSignals, util: float | None, now: float,
                   lead: float) -> float | None:
        """Utilisation ``lead`` seconds from now if the request rate keeps its trend since
        the last reading (rises only: a falling trend never hastens a scale-down)."""
        before = self.last.get(tier)
        if util is None or before is None or now <= before.at or s.request_rate <= 0:
            return util
        slope = (s.request_rate - before.request_rate) / (now - before.at)
        growth = (s.request_rate + slope * lead) / s.request_rate
        return util * min(max(growth, 1.0), MAX_PROJECTED_GROWTH)

    def _decide(self, tier: str, s: TierSignals, now: float) -> Decision:
        policy = self.config.policy(tier)
        util = self._utilisation(s, policy)
        projected = self._projected(tier, s, util, now, policy.lead_seconds)
        before = self.last.get(tier)
        changed_at = before.changed_at if before else None
        change = before.change if before else None

        def decided(action: Action, desired: int, reason: str, detail: str) -> Decision:
            moved = action != "hold"
            return Decision(tier, action, s.replicas, desired, reason, detail, now, util,
                            projected, s.request_rate, now if moved else changed_at,
                            action if moved else change)

        current = s.replicas
        if current < policy.min_replicas:
            return decided("scale_up", policy.min_replicas, "below_min",
                           f"{current} replicas, MIN is {policy.min_replicas}")
        if current > policy.max_replicas:
            return decided("scale_down", policy.max_replicas, "above_max",
                           f"{current} replicas, MAX is {policy.max_replicas}")
        if current and s.open_breakers >= current:
            return decided("hold", current, "tier_down",
                           f"all {current} providers have an open breaker")
        if not s.load_known:
            return decided("hold", current, "no_figures", "no in-flight accounting to read")
        wanted = self._scale_up_reason(s, policy, util, projected)
        if wanted is not None:
            reason, detail = wanted
            peak = max(util or 0.0, projected or 0.0)
            target = self.config.target_utilisation
            desired = min(policy.max_replicas,
                          max(current + 1, math.ceil(current * peak / target)))
            if desired <= current:
                return decided("hold", current, "at_max", f"{detail}; MAX is reached")
            if s.warming:
                return decided("hold", current, "warming",
                               f"{detail}; {s.warming} replica(s) still warming")
            if change == "scale_up" and changed_at is not None and (
                    now - changed_at < policy.lead_seconds):
                return decided("hold", current, "cooling_down",
                               f"{detail}; the last scale-up is {now - changed_at:.0f} s old, "
                               f"lead time {policy.lead_seconds:.0f} s")
            return decided("scale_up", desired, reason, detail)
        if util is None:
            return decided("hold", current, "no_figures",
                           "no capacity or REQUESTS_PER_REPLICA to measure utilisation by")
        down = self.config.scale_down_at
        if util < down and (projected is None or projected < down):
            detail = f"utilisation {_ratio(util)} < {down}"
            if current <= policy.min_replicas:
                return decided("hold", current, "at_min", f"{detail}; MIN is reached")
            if changed_at is not None and now - changed_at < self.config.cooldown_seconds:
                return decided("hold", current, "cooling_down",
                               f"{detail}; last change {now - changed_at:.0f} s ago, "
                               f"cool-down {self.config.cooldown_seconds:.0f} s")
            return decided("scale_down", current - 1, "idle", detail)
        return decided("hold", current, "steady",
                       f"utilisation {_ratio(util)} within {down}-{self.config.scale_up_at}")

    def _scale_up_reason(self, s: TierSignals, policy: TierPolicy, util: float | None,
                         projected: float | None) -> tuple[str, str] | None:
        up = self.config.scale_up_at
        if not s.replicas and (s.request_rate > 0 or s.inflight or s.overflow_rate > 0):
            return "busy", f"no replicas, {s.request_rate:.2f} requests/s"
        if util is not None and util > up:
            return "busy", f"utilisation {_ratio(util)} > {up}"
        if projected is not None and projected > up:
            return "busy_soon", (f"utilisation {_ratio(util)} projected to {_ratio(projected)} "
                                 f"in {policy.lead_seconds:.0f} s (lead time)")
        offered = s.request_rate + s.overflow_rate
        if offered > 0 and s.overflow_rate / offered > self.config.overflow_up_at:
            return "overflowing", (f"{s.overflow_rate / offered:.0%} of requests overflowed "
                                   f"to the next tier")
        slow = policy.first_token_p95_seconds
        if slow is not None and s.first_token_p95 is not None and s.first_token_p95 > slow:
            return "slow_first_token", (f"p95 time to first token {s.first_token_p95:.2f} s "
                                        f"> {slow} s")
        return None
