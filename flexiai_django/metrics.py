"""Prometheus metrics: what the fallback chain and the breakers did, in every worker.

Counters and the latency histogram are recorded where things happen: the fallback chain (every
``chat``/``achat``/stream, HTTP or not) and breaker transitions. Gauges that describe
shared state (breaker states, Redis) are set by ``/metrics`` just before it renders, from
the shared store, so whichever worker answers a scrape reports the deployment's truth.

Several processes (gunicorn): ``PROMETHEUS_MULTIPROC_DIR`` must be set before
prometheus_client is imported (``deploy/gunicorn.conf.py`` does it); each process writes
its own files and the exporter adds them up. The gauges use ``livemostrecent``: the
scraping worker's fresh reading wins, and a dead worker's go with ``mark_process_dead``.

Label values are provider names, breaker names, tiers, states and outcomes: never error
messages, URLs or keys. Recording costs a few microseconds (label children are cached).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from django.dispatch import receiver
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from flexiai_django import errors, signals
from flexiai_django.breakers.state import BreakerState, State, available
from flexiai_django.capacity.planner import ACTIONS, REASONS, Decision

if TYPE_CHECKING:
    from flexiai_django.providers.base import ProviderConfig

#: Tiers of :data:`REQUESTS` and :data:`FALLBACKS`; "none" is a request no tier answered.
TIERS = ("provider", "cache", "degraded", "none")

#: Kinds of :data:`TOKENS`.
TOKEN_KINDS = ("prompt", "completion")

#: Error kinds that may appear as an outcome; anything else is reported as "provider_error".
ERROR_KINDS = frozenset(
    cls.kind for cls in (
        errors.ProviderError, errors.UpstreamTimeout, errors.UpstreamConnectionError,
        errors.RateLimited, errors.UpstreamServerError, errors.MalformedReply,
        errors.StreamInterrupted, errors.ProviderAuthError, errors.BadRequest,
        errors.ContextLengthExceeded, errors.FirstTokenTimeout, errors.StreamStalled,
    )
)

# Provider calls take from milliseconds (a local model) to minutes (a long answer).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)

REQUESTS = Counter(
    "flexiai_requests_total",
    "Chat requests through the fallback chain, by the provider that answered live "
    "(empty for other tiers), the tier, and the outcome.",
    ["provider", "tier", "outcome"],
)
ATTEMPTS = Counter(
    "flexiai_provider_attempts_total",
    "Calls sent to a provider, by outcome: ok, an error kind, or cancelled.",
    ["provider", "outcome"],
)
LATENCY = Histogram(
    "flexiai_provider_latency_seconds",
    "Successful provider calls: seconds to the whole answer, or to the first chunk of a stream.",
    ["provider"],
    buckets=LATENCY_BUCKETS,
)
TOKENS = Counter(
    "flexiai_tokens_total",
    "Tokens the providers that served reported, by provider and kind (prompt or "
    "completion): the basis of cost. A provider that reports no usage adds nothing.",
    ["provider", "kind"],
)
FALLBACKS = Counter(
    "flexiai_fallback_total",
    "Requests no provider answered, by the tier that did: cache, degraded, or none (503).",
    ["tier"],
)
RETRIES = Counter(
    "flexiai_retries_total",
    "Calls sent to a provider again after a transient failure (429, 5xx, a lost "
    "connection), before failing over.",
    ["provider"],
)
REJECTIONS = Counter(
    "flexiai_breaker_rejections_total",
    "Calls a breaker refused without sending them (open, forced open, probe slots full).",
    ["breaker"],
)
TRANSITIONS = Counter(
    "flexiai_breaker_transitions_total",
    "Breaker state changes, counted once each by the process that made them.",
    ["breaker", "from_state", "to_state"],
)
BREAKER_STATE = Gauge(
    "flexiai_breaker_state",
    "1 for the state each breaker is in, 0 for the others (read from the shared store "
    "at scrape time).",
    ["breaker", "state"],
    multiprocess_mode="livemostrecent",
)
PROVIDERS_AVAILABLE = Gauge(
    "flexiai_providers_available",
    "Enabled providers whose breaker would admit a call now (0: every request is served "
    "by the cache or degraded tier, or gets a 503).",
    multiprocess_mode="livemostrecent",
)
HEDGES = Counter(
    "flexiai_hedges_total",
    "Hedged requests' second calls, by the provider they went to: started, won (its answer "
    "was used), lost (cancelled or failed; started = won + lost), refused_budget (the "
    "deployment's hedge budget was spent: provider is the one it would have gone to).",
    ["provider", "outcome"],
)
REDIS_CONNECTED = Gauge(
    "flexiai_redis_connected",
    "1 when the breaker store can use its state (Redis reachable, or an in-process store), "
    "0 when a shared store lost Redis and workers run on local breakers.",
    multiprocess_mode="livemostrecent",
)
INFLIGHT = Gauge(
    "flexiai_inflight",
    "Requests this worker has in flight on each provider, where a slot is held (a "
    "provider with a capacity, or a least-busy/overflow alias); summed over live workers.",
    ["provider"],
    multiprocess_mode="livesum",
)

MALFORMED_CHUNKS = Counter(
    "flexiai_malformed_chunks_total",
    "Garbled stream events, by provider: skipped while a stream has few (more than 3, or "
    "one right before its end with no finish reason, fail it as malformed_reply).",
    ["provider"],
)

ACTIVE_PROBES = Counter(
    "flexiai_active_probes_total",
    "Out-of-band probes of providers whose breaker is open (one per ACTIVE_PROBE_SECONDS "
    "per open provider, deployment-wide), by outcome: ok, an error kind, or error.",
    ["provider", "outcome"],
)

WARMUP_PROBES = Counter(
    "flexiai_warmup_probes_total",
    "Warm-up probes of warming providers (one per WARMUP_PROBE_SECONDS per warming "
    "provider, deployment-wide), by outcome: ok (the provider is warm now), an error kind, "
    "or error.",
    ["provider", "outcome"],
)

CAPACITY_DESIRED = Gauge(
    "flexiai_capacity_desired",
    "The capacity planner's last desired replica count per tier (read from Redis at scrape "
    "time: manage.py flexiai_capacity decides).",
    ["tier"],
    multiprocess_mode="livemostrecent",
)
CAPACITY_DECISION = Gauge(
    "flexiai_capacity_decision",
    "1 for the capacity planner's last decision per tier (action: scale_up, hold or "
    "scale_down) and its reason, 0 for the others.",
    ["tier", "action", "reason"],
    multiprocess_mode="livemostrecent",
)

ALL: tuple[MetricWrapperBase, ...] = (
    REQUESTS, ATTEMPTS, LATENCY, TOKENS, FALLBACKS, RETRIES, REJECTIONS, TRANSITIONS,
    HEDGES, BREAKER_STATE, PROVIDERS_AVAILABLE, REDIS_CONNECTED, ACTIVE_PROBES,
    MALFORMED_CHUNKS, INFLIGHT, WARMUP_PROBES, CAPACITY_DESIRED, CAPACITY_DECISION,
)

_children: dict[tuple[Any, ...], Any] = {}


def _child(metric: MetricWrapperBase, *labels: str) -> Any:
    """``metric.labels(*labels)``, cached: the hot path skips label validation."""
    key = (metric, *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def inflight(provider: str, change: int) -> None:
    """A slot on ``provider`` was taken (+1) or freed (-1) by this worker."""
    _child(INFLIGHT, provider).inc(change)


def outcome_of(kind: str) -> str:
    """An error kind as a label value, from a closed set whatever an adapter raised."""
    return kind if kind in ERROR_KINDS else errors.ProviderError.kind


# -- recorded by the fallback chain (Walk) ---------------------------------------------------


def rejected(breaker: str) -> None:
    _child(REJECTIONS, breaker).inc()


def retried(provider: str) -> None:
    _child(RETRIES, provider).inc()


def answered(provider: str, seconds: float) -> None:
    _child(ATTEMPTS, provider, "ok").inc()
    _child(LATENCY, provider).observe(seconds)
    _child(REQUESTS, provider, "provider", "ok").inc()


def used(provider: str, prompt_tokens: int, completion_tokens: int) -> None:
    """Tokens one provider served for one answer (each provider of a continued answer
    reports its own part)."""
    if prompt_tokens:
        _child(TOKENS, provider, TOKEN_KINDS[0]).inc(prompt_tokens)
    if completion_tokens:
        _child(TOKENS, provider, TOKEN_KINDS[1]).inc(completion_tokens)


def attempt_failed(provider: str, kind: str) -> None:
    _child(ATTEMPTS, provider, outcome_of(kind)).inc()


def request_failed(provider: str, outcome: str) -> None:
    """The chain stopped at a provider: a request error, or a stream cut after its start."""
    _child(REQUESTS, provider, "provider", outcome).inc()


def aborted(provider: str) -> None:
    """An attempt ended with no verdict: the caller went away (cancelled) or a bug (error)."""
    exc = sys.exception()
    outcome = "error" if isinstance(exc, Exception) else "cancelled"
    _child(ATTEMPTS, provider, outcome).inc()
    _child(REQUESTS, provider, "provider", outcome).inc()


def cancelled(provider: str) -> None:
    """An attempt the chain itself cancelled (a hedged race's loser): the request goes on."""
    _child(ATTEMPTS, provider, "cancelled").inc()


def hedged(provider: str, outcome: str) -> None:
    """A hedge ``started``, ``won``, ``lost`` or was ``refused_budget`` (see :data:`HEDGES`)."""
    _child(HEDGES, provider, outcome).inc()


def malformed_chunk(provider: str) -> None:
    """A provider's stream had an event that could not be read (skipped, or fatal)."""
    _child(MALFORMED_CHUNKS, provider).inc()


def fell_back(tier: str) -> None:
    """Every provider failed or was skipped; ``tier`` answered (``"none"``: a 503)."""
    _child(FALLBACKS, tier).inc()
    _child(REQUESTS, "", tier, "unavailable" if tier == "none" else "ok").inc()


def probed(provider: str, outcome: str) -> None:
    """The active prober called ``provider`` (see :mod:`flexiai_django.active_probes`)."""
    _child(ACTIVE_PROBES, provider, outcome).inc()


def warmup_probed(provider: str, outcome: str) -> None:
    """The warm-up prober called ``provider`` (see :mod:`flexiai_django.warmup`)."""
    _child(WARMUP_PROBES, provider, outcome).inc()


# -- breaker transitions ----------------------------------------------------------------------


@receiver(signals.breaker_transition, dispatch_uid="flexiai-metrics-transition")
def _count_transition(sender: Any, name: str, before: BreakerState, after: BreakerState,
                      **kwargs: Any) -> None:
    """The signal fires only in the process whose store call made the change (never for a
    broadcast received from another worker), so each transition is counted once."""
    if before.state is not after.state:
        _child(TRANSITIONS, name, before.state.value, after.state.value).inc()


# -- set at scrape time -------------------------------------------------------------------------


def set_shared_state(states: Mapping[str, BreakerState], providers: Sequence[ProviderConfig],
                     *, connected: bool, now: float) -> None:
    """The gauges, from the shared store's ``states``: one-hot breaker states (enabled
    providers never called yet show closed), available providers, and Redis."""
    for name in sorted({*states, *(p.breaker_name for p in providers)}):
        current = states[name].state if name in states else State.CLOSED
        for state in State:
            _child(BREAKER_STATE, name, state.value).set(1.0 if state is current else 0.0)
    PROVIDERS_AVAILABLE.set(sum(
        available(states.get(p.breaker_name, BreakerState()), p.breaker, now) for p in providers))
    REDIS_CONNECTED.set(1.0 if connected else 0.0)


def set_capacity(decisions: Iterable[Decision]) -> None:
    """The planner's last decision per tier, one-hot over actions and reasons (so any
    worker's scrape replaces what another worker set before)."""
    for decision in decisions:
        _child(CAPACITY_DESIRED, decision.tier).set(decision.desired)
        for action in ACTIONS:
            for reason in REASONS:
                current = action == decision.action and reason == decision.reason
                _child(CAPACITY_DECISION, decision.tier, action, reason).set(
                    1.0 if current else 0.0)


def samples() -> dict[str, frozenset[str]]:
    """Every sample name ``/metrics`` can show for this module, with its labels: what a
    dashboard or an alert rule may refer to."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"),
                "gauge": ("",)}
    found: dict[str, frozenset[str]] = {}
    for metric in ALL:
        labels = frozenset(metric._labelnames)
        for family in metric.describe():
            for suffix in suffixes[family.type]:
                extra = {"le"} if suffix == "_bucket" else set()
                found[family.name + suffix] = labels | extra
    return found
