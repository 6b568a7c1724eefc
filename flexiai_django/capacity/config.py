"""``FLEXIAI["CAPACITY_PLANNER"]``: the planner's options, typed, with documented defaults.

The raw dict is checked by :func:`problems` (system checks flexiai.E061 for the top-level
options, E062 for the hook, E063 for the tiers) and read by :func:`planner_config`, which
fills in what the project left out. A tier with no entry under ``TIERS`` is planned with
:data:`DEFAULT_TIER`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

#: A hook is a webhook URL (POSTed the decision as JSON) or a dotted path to a callable.
_URL = re.compile(r"^https?://[^\s/]+(/\S*)?$")
_DOTTED = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+$")


@dataclass(frozen=True)
class TierPolicy:
    """How one tier scales. ``LEAD_SECONDS``: how long a new replica takes to serve (load
    is projected that far ahead, and no second scale-up comes before it has passed).
    ``REQUESTS_PER_REPLICA``: requests a second one replica serves, for a tier whose
    providers have no capacity set. ``FIRST_TOKEN_P95_SECONDS``: scale up when the
    tier's p95 time to first token is above it (None: not a signal)."""

    lead_seconds: float = 60.0
    min_replicas: int = 1
    max_replicas: int = 10
    requests_per_replica: float | None = None
    first_token_p95_seconds: float | None = None


#: Tiers the seed deployment knew; other tiers get DEFAULT_TIER.
SEED_TIERS: dict[str, TierPolicy] = {
    "large": TierPolicy(lead_seconds=180.0),
    "small": TierPolicy(lead_seconds=20.0),
}
DEFAULT_TIER = TierPolicy()

_TIER_KEYS = {"LEAD_SECONDS": "lead_seconds", "MIN": "min_replicas", "MAX": "max_replicas",
              "REQUESTS_PER_REPLICA": "requests_per_replica",
              "FIRST_TOKEN_P95_SECONDS": "first_token_p95_seconds"}


@dataclass(frozen=True)
class PlannerConfig:
    """Utilisation is in-flight requests over the tier's capacity (or the request rate
    over ``REQUESTS_PER_REPLICA`` × replicas). Above ``SCALE_UP_AT`` (now, or projected
    over the tier's lead time) the tier scales up to reach ``TARGET_UTILISATION``; below
    ``SCALE_DOWN_AT`` it gives back one replica; in between it holds (hysteresis).
    ``OVERFLOW_UP_AT``: the share of a tier's requests sent on to the next tier because
    it was full that scales it up too. ``COOLDOWN_SECONDS``: no scale-down within this
    long of any change (a scale-up waits for the tier's lead time instead)."""

    interval_seconds: float = 15.0
    window_seconds: float = 60.0
    scale_up_at: float = 0.8
    scale_down_at: float = 0.3
    target_utilisation: float = 0.6
    overflow_up_at: float = 0.05
    cooldown_seconds: float = 300.0
    hook: str | None = None
    tiers: dict[str, TierPolicy] = field(default_factory=lambda: dict(SEED_TIERS))
    #: Tiers named under TIERS: planned even while no provider has them (MIN replicas).
    planned: tuple[str, ...] = ()

    def policy(self, tier: str) -> TierPolicy:
        return self.tiers.get(tier, DEFAULT_TIER)


_TOP_KEYS = {"INTERVAL_SECONDS": "interval_seconds", "WINDOW_SECONDS": "window_seconds",
             "SCALE_UP_AT": "scale_up_at", "SCALE_DOWN_AT": "scale_down_at",
             "TARGET_UTILISATION": "target_utilisation", "OVERFLOW_UP_AT": "overflow_up_at",
             "COOLDOWN_SECONDS": "cooldown_seconds"}
#: Every key CAPACITY_PLANNER may hold.
KNOWN_KEYS = frozenset({*_TOP_KEYS, "HOOK", "TIERS"})


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _top_problems(raw: dict[str, Any]) -> list[str]:
    found = [f"unknown key {key!r}" for key in sorted(set(raw) - KNOWN_KEYS, key=str)]
    for key in ("INTERVAL_SECONDS", "WINDOW_SECONDS"):
        if key in raw and not (_number(raw[key]) and raw[key] > 0):
            found.append(f"{key} must be a number of seconds above 0")
    if "COOLDOWN_SECONDS" in raw and not (_number(raw["COOLDOWN_SECONDS"])
                                          and raw["COOLDOWN_SECONDS"] >= 0):
        found.append("COOLDOWN_SECONDS must be a number of seconds, 0 or more")
    for key in ("SCALE_UP_AT", "SCALE_DOWN_AT", "TARGET_UTILISATION", "OVERFLOW_UP_AT"):
        if key in raw and not (_number(raw[key]) and 0 < raw[key] <= 1):
            found.append(f"{key} must be a fraction above 0 and at most 1")
    if not found:
        c = planner_config({k: v for k, v in raw.items() if k in _TOP_KEYS})
        if not c.scale_down_at < c.target_utilisation < c.scale_up_at:
            found.append("SCALE_DOWN_AT < TARGET_UTILISATION < SCALE_UP_AT must hold")
    return found


def _hook_problem(hook: Any) -> str | None:
    if hook is None or (isinstance(hook, str) and _URL.match(hook)):
        return None
    if not isinstance(hook, str) or not _DOTTED.match(hook):
        return "HOOK must be None, an http(s) URL or a dotted path to a callable"
    from django.utils.module_loading import import_string

    try:
        target = import_string(hook)
    except ImportError:
        return f"HOOK {hook!r} does not import"
    return None if callable(target) else f"HOOK {hook!r} is not callable"


def _tier_problems(tiers: Any) -> list[str]:
    if not isinstance(tiers, dict):
        return ["TIERS must be a dict of tier label to options"]
    found: list[str] = []
    for tier, options in tiers.items():
        if not isinstance(tier, str) or not tier or not isinstance(options, dict):
            found.append(f"TIERS[{tier!r}] must be a non-empty label with a dict of options")
            continue
        for key in sorted(set(options) - set(_TIER_KEYS), key=str):
            found.append(f"TIERS[{tier!r}] has an unknown key {key!r}")
        base = SEED_TIERS.get(tier, DEFAULT_TIER)
        lead = options.get("LEAD_SECONDS", 0)
        low = options.get("MIN", base.min_replicas)
        high = options.get("MAX", base.max_replicas)
        if not (_number(lead) and lead >= 0):
            found.append(f"TIERS[{tier!r}]['LEAD_SECONDS'] must be seconds, 0 or more")
        if not (_count(low) and _count(high) and high >= max(low, 1)):
            found.append(f"TIERS[{tier!r}] needs integers 0 <= MIN <= MAX, MAX at least 1")
        for key in ("REQUESTS_PER_REPLICA", "FIRST_TOKEN_P95_SECONDS"):
            value = options.get(key)
            if value is not None and not (_number(value) and value > 0):
                found.append(f"TIERS[{tier!r}][{key!r}] must be None or a number above 0")
    return found


def problems(raw: Any) -> list[tuple[str, str]]:
    """What is wrong with a CAPACITY_PLANNER value, as (check id, message) pairs."""
    if not isinstance(raw, dict):
        return [("flexiai.E061", "it must be a dict")]
    found = [("flexiai.E061", text) for text in _top_problems(raw)]
    hook = _hook_problem(raw.get("HOOK"))
    if hook:
        found.append(("flexiai.E062", hook))
    found += [("flexiai.E063", text) for text in _tier_problems(raw.get("TIERS", {}))]
    return found


def _policy(tier: str, options: dict[str, Any]) -> TierPolicy:
    return replace(SEED_TIERS.get(tier, DEFAULT_TIER),
                   **{_TIER_KEYS[k]: v for k, v in options.items() if k in _TIER_KEYS})


def planner_config(raw: dict[str, Any]) -> PlannerConfig:
    """The options with defaults filled in: a ``TIERS`` entry's missing keys keep the seed
    tier's values (``large``, ``small``) or :data:`DEFAULT_TIER`'s. Assumes
    :func:`problems` found nothing wrong."""
    tiers = dict(SEED_TIERS)
    for tier, options in (raw.get("TIERS") or {}).items():
        tiers[tier] = _policy(tier, options)
    values = {name: raw[key] for key, name in _TOP_KEYS.items() if key in raw}
    return PlannerConfig(**values, hook=raw.get("HOOK"), tiers=tiers,
                         planned=tuple(raw.get("TIERS") or ()))
