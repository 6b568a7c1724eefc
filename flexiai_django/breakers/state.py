"""The circuit breaker as a pure state machine: no I/O, no clock, no randomness.

Every function takes the current :class:`BreakerState`, the :class:`BreakerConfig`,
``now`` (seconds) and, where an open period starts, ``rand`` in [0, 1); it returns the
new state. Stores (in-process, Redis) decide where state lives and how the update is
made atomic; the rules live here once. Semantics follow Resilience4j: CLOSED trips to
OPEN after ``failure_threshold`` consecutive failures, OPEN becomes HALF_OPEN lazily on
the first call after the open period, HALF_OPEN admits ``half_open_max_calls`` probes and
closes after ``success_threshold`` successes. FORCED_OPEN and DISABLED are admin overrides.

``version`` grows on every transition and also when a failure streak starts or ends, so
a worker holding a snapshot can tell "closed and clean" (no shared write needed after a
success) from "closed with recent failures".

While a breaker is OPEN an active prober (:mod:`flexiai_django.active_probes`) may call
the provider out of band: :func:`record_active_probe` takes its outcome. A success counts
toward ``success_threshold`` and closes the breaker at once, without waiting for the open
period; a failure is noted but neither extends nor doubles the open period (the prober
calls on its own schedule, so its failures say nothing new about how long to back off).
A half-open request that fails still doubles it, probing or not: with probing on, the
open period no longer decides how soon a recovered provider is back (a probe does, within
an interval), only how often a real request is risked on a provider that may still be
down, and the longer an outage has lasted the rarer that should be.
A provider's ``Retry-After`` cools its breaker down (:func:`cool_down`): whatever the
state, no call is admitted before ``cooldown_until``, in any worker. It bumps the version
so the broadcast carries it to every worker's snapshot, but it is not a failure itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"


@dataclass(frozen=True)
class BreakerConfig:
    failure_threshold: int = 5
    success_threshold: int = 1
    open_seconds: float = 30.0
    max_open_seconds: float = 300.0
    jitter: float = 0.1
    half_open_max_calls: int = 1
    probe_ttl: float = 60.0

    def open_period(self, openings: int, rand: float) -> float:
        """Base × n, capped, then spread by ±jitter so workers don't probe in lockstep."""
        base = min(self.open_seconds * max(openings, 1), self.max_open_seconds)
        return max(0.0, base * (1 + self.jitter * (2 * rand - 1)))


@dataclass(frozen=True)
class BreakerState:
    state: State = State.CLOSED
    failures: int = 0
    successes: int = 0
    openings: int = 0
    opened_at: float | None = None
    retry_at: float | None = None
    probes: tuple[float, ...] = ()
    version: int = 0
    last_failure_at: float | None = None
    last_error: str | None = None
    changed_at: float | None = None
    total_failures: int = 0
    #: Active probes sent since the breaker last opened from CLOSED, and the latest one.
    active_probes: int = 0
    last_probe_at: float | None = None
    last_probe: str | None = None  # "ok" or "failed"
    #: No call before this time (a provider's Retry-After), whatever the state.
    cooldown_until: float | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "state": self.state.value,
            "failures": self.failures,
            "successes": self.successes,
            "openings": self.openings,
            "opened_at": self.opened_at,
            "retry_at": self.retry_at,
            "probes": list(self.probes),
            "version": self.version,
            "last_failure_at": self.last_failure_at,
            "last_error": self.last_error,
            "changed_at": self.changed_at,
            "total_failures": self.total_failures,
            "active_probes": self.active_probes,
            "last_probe_at": self.last_probe_at,
            "last_probe": self.last_probe,
            "cooldown_until": self.cooldown_until,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> BreakerState:
        values = dict(data)
        values["state"] = State(str(values.get("state", State.CLOSED)))
        probes = values.get("probes") or ()
        values["probes"] = tuple(probes) if isinstance(probes, list | tuple) else ()
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in values.items() if k in known})  # type: ignore[arg-type]


@dataclass(frozen=True)
class Admission:
    """The answer to "may I call?": allowed, whether as a half-open probe, and the state after."""

    allowed: bool
    state: BreakerState
    probe: bool = False
    retry_after: float | None = None
    transitioned: bool = False
    recorded: bool = field(default=True)
    #: Refused because the provider asked for a pause (Retry-After), not by the state.
    cooling_down: bool = False

    @property
    def refusal(self) -> str:
        """Why a call was refused, as the chain's trail shows it."""
        return "cooling_down" if self.cooling_down else self.state.state.value


def _transition(s: BreakerState, to: State, now: float, **changes: object) -> BreakerState:
    return replace(s, state=to, version=s.version + 1, changed_at=now, **changes)  # type: ignore[arg-type]


def _open(s: BreakerState, cfg: BreakerConfig, now: float, rand: float) -> BreakerState:
    openings = s.openings + 1
    return _transition(
        s,
        State.OPEN,
        now,
        active_probes=s.active_probes if s.state is State.HALF_OPEN else 0,
        openings=openings,
        opened_at=now,
        retry_at=now + cfg.open_period(openings, rand),
        successes=0,
        probes=(),
    )


def acquire(s: BreakerState, cfg: BreakerConfig, now: float) -> Admission:
    """Decide whether one call may go out now; a HALF_OPEN admission reserves a probe slot."""
    if s.state is State.DISABLED:
        return Admission(True, s, recorded=False)
    if s.state is State.FORCED_OPEN:
        return Admission(False, s)
    if cooling(s, now):
        assert s.cooldown_until is not None
        return Admission(False, s, retry_after=s.cooldown_until - now, cooling_down=True)
    if s.state is State.CLOSED:
        return Admission(True, s)
    transitioned = False
    if s.state is State.OPEN:
        assert s.retry_at is not None
        if now < s.retry_at:
            return Admission(False, s, retry_after=s.retry_at - now)
        s = _transition(s, State.HALF_OPEN, now, successes=0, probes=())
        transitioned = True
    live = tuple(p for p in s.probes if p > now)
    if len(live) >= cfg.half_open_max_calls:
        s = replace(s, probes=live)
        return Admission(False, s, retry_after=min(live) - now, transitioned=transitioned)
    s = replace(s, probes=(*live, now + cfg.probe_ttl))
    return Admission(True, s, probe=True, transitioned=transitioned)


def decide_from_snapshot(snap: BreakerState, cfg: BreakerConfig,
                         now: float) -> Admission | None:
    """A worker's decision from its snapshot of a shared breaker alone, where that is safe
    (no probe slot to take, no failure streak to read); ``None``: ask the shared store.

    A cooldown the snapshot knows of refuses here, without a round trip: that is how a
    Retry-After heard by one worker holds back every other.
    """
    if snap.state is State.DISABLED:
        return Admission(True, snap, recorded=False)
    if snap.state is State.FORCED_OPEN:
        return Admission(False, snap)
    if snap.cooldown_until is not None and now < snap.cooldown_until:
        return Admission(False, snap, retry_after=snap.cooldown_until - now,
                         cooling_down=True)
    if snap.state is State.CLOSED:
        return Admission(True, snap) if snap.failures == 0 else None
    if snap.state is State.OPEN and snap.retry_at is not None and now < snap.retry_at:
        return Admission(False, snap, retry_after=snap.retry_at - now)
    if snap.state is State.HALF_OPEN:
        live = [p for p in snap.probes if p > now]
        if len(live) >= cfg.half_open_max_calls:
            return Admission(False, snap, retry_after=min(live) - now)
    return None


def available(s: BreakerState, cfg: BreakerConfig, now: float) -> bool:
    """Would a call be admitted now? (A read-only question: no probe slot is taken.)"""
    if s.state is State.DISABLED:
        return True
    if cooling(s, now):
        return False
    if s.state is State.CLOSED:
        return True
    if s.state is State.OPEN:
        return s.retry_at is not None and now >= s.retry_at
    if s.state is State.HALF_OPEN:
        return len([p for p in s.probes if p > now]) < cfg.half_open_max_calls
    return False


def cooling(s: BreakerState, now: float) -> bool:
    """Whether the provider's own Retry-After still holds every call back."""
    return s.cooldown_until is not None and now < s.cooldown_until


def cool_down(s: BreakerState, cfg: BreakerConfig, now: float, seconds: float) -> BreakerState:
    """The provider asked for ``seconds`` of quiet (Retry-After): admit nobody until then,
    capped at ``max_open_seconds``. Extends a cooldown, never shortens it; an admin
    override (forced open, disabled) has the last word, so it is left alone."""
    if s.state in (State.DISABLED, State.FORCED_OPEN) or not seconds > 0:  # NaN: nothing
        return s
    until = now + min(seconds, cfg.max_open_seconds)
    if s.cooldown_until is not None and s.cooldown_until >= until:
        return s
    return replace(s, cooldown_until=until, version=s.version + 1)


def _still(s: BreakerState, now: float) -> float | None:
    """The cooldown if it still holds: a write that ends a streak drops a spent one."""
    return s.cooldown_until if cooling(s, now) else None


def _release_probe(s: BreakerState) -> tuple[float, ...]:
    return tuple(sorted(s.probes)[1:])


def record_success(s: BreakerState, cfg: BreakerConfig, now: float, *, probe: bool) -> BreakerState:
    if s.state is State.CLOSED:
        if not s.failures:
            return s
        return replace(s, failures=0, version=s.version + 1, cooldown_until=_still(s, now))
    if s.state is State.HALF_OPEN and probe:
        s = replace(s, probes=_release_probe(s), successes=s.successes + 1)
        if s.successes >= cfg.success_threshold:
            return _transition(
                s, State.CLOSED, now, failures=0, successes=0, openings=0,
                opened_at=None, retry_at=None, probes=(), cooldown_until=_still(s, now),
            )
        return s
    return s


def record_failure(
    s: BreakerState,
    cfg: BreakerConfig,
    now: float,
    rand: float,
    *,
    probe: bool,
    error: str | None = None,
) -> BreakerState:
    if s.state in (State.DISABLED, State.FORCED_OPEN):
        return s
    s = replace(
        s,
        last_failure_at=now,
        last_error=error,
        total_failures=s.total_failures + 1,
    )
    if s.state is State.CLOSED:
        s = replace(s, failures=s.failures + 1, version=s.version + (s.failures == 0))
        return _open(s, cfg, now, rand) if s.failures >= cfg.failure_threshold else s
    if s.state is State.HALF_OPEN and probe:
        return _open(s, cfg, now, rand)
    return s


def record_active_probe(
    s: BreakerState, cfg: BreakerConfig, now: float, *, ok: bool, error: str | None = None
) -> BreakerState:
    """An out-of-band probe of an OPEN breaker's provider came back ``ok`` or not.

    Success: one more success; at ``success_threshold`` the breaker closes now. Failure:
    the success streak restarts and the error is noted; the open period is left as it
    is (never extended, never doubled). Any other state ignores the probe: it was
    overtaken by traffic or by an admin. Always a new version, so the broadcast carries
    the probe's outcome to every worker and the status page.
    """
    if s.state is not State.OPEN:
        return s
    s = replace(s, active_probes=s.active_probes + 1, last_probe_at=now,
                last_probe="ok" if ok else "failed")
    if not ok:
        return replace(s, successes=0, last_failure_at=now, last_error=error,
                       version=s.version + 1)
    successes = s.successes + 1
    if successes >= cfg.success_threshold:
        return _transition(
            s, State.CLOSED, now, failures=0, successes=0, openings=0,
            opened_at=None, retry_at=None, probes=(),
        )
    return replace(s, successes=successes, version=s.version + 1)


def release(s: BreakerState, *, probe: bool) -> BreakerState:
    """Give back a probe slot for a call whose outcome says nothing about the provider."""
    if probe and s.state is State.HALF_OPEN:
        return replace(s, probes=_release_probe(s))
    return s


def force(s: BreakerState, to: State, now: float) -> BreakerState:
    """Admin override: reset (CLOSED), FORCED_OPEN or DISABLED, always a new version."""
    if to is State.CLOSED:
        return _transition(
            BreakerState(version=s.version, total_failures=s.total_failures),
            State.CLOSED,
            now,
        )
    if to in (State.FORCED_OPEN, State.DISABLED):
        return _transition(s, to, now, probes=(), successes=0)
    raise ValueError(f"cannot force a breaker into {to}")
