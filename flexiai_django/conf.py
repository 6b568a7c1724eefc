"""The ``FLEXIAI`` settings dict, merged over documented, typed defaults.

:class:`FlexiAISettings` is the one place a setting is declared: its type (so mypy checks
every use), its default and its meaning. ``DEFAULTS`` and the system checks' list of
known keys derive from it. Read settings through :func:`get_settings` only, never at
import time: the merged result is cached and dropped whenever Django's
``setting_changed`` fires (``override_settings``).
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from functools import cache
from typing import Any, Literal

from django.conf import settings as django_settings
from django.core.signals import setting_changed
from django.dispatch import receiver


def _local_store() -> dict[str, Any]:
    return {"BACKEND": "flexiai_django.breakers.memory.LocalBreakerStore", "OPTIONS": {}}


@dataclass(frozen=True)
class FlexiAISettings:
    """Every FLEXIAI key with its type and default. Values are as the project wrote them:
    ``python manage.py check`` (flexiai.E0xx) reports the ones of the wrong type."""

    # Where breaker state lives: a dotted path and its keyword arguments. The default
    # keeps it in this process; RedisBreakerStore shares one state across the deployment.
    BREAKER_STORE: dict[str, Any] = field(default_factory=_local_store)
    # Breaker defaults; each provider row may override them.
    FAILURE_THRESHOLD: int = 5
    SUCCESS_THRESHOLD: int = 1
    OPEN_SECONDS: float = 30.0
    MAX_OPEN_SECONDS: float = 300.0
    OPEN_JITTER: float = 0.1
    HALF_OPEN_MAX_CALLS: int = 1
    PROBE_TTL_SECONDS: float = 60.0
    # Provider calls.
    DEFAULT_TIMEOUT: float = 30.0
    PROVIDER_REFRESH_SECONDS: float = 1.0
    # Healing (each provider row may override the first four). A transient failure (429,
    # 5xx, a reset before any byte) is retried on the same provider up to MAX_RETRIES
    # times after a jittered backoff; a Retry-After up to RETRY_AFTER_CAP_SECONDS is
    # waited for, a longer one fails over at once. Either way the provider cools down
    # deployment-wide for as long as it asked.
    MAX_RETRIES: int = 1
    RETRY_BACKOFF_SECONDS: float = 0.25
    RETRY_AFTER_CAP_SECONDS: float = 2.0
    # A stream whose first token has not come within FIRST_TOKEN_TIMEOUT, or that goes
    # silent for STALL_TIMEOUT between chunks, is broken (None: only the provider timeout).
    FIRST_TOKEN_TIMEOUT: float | None = 10.0
    STALL_TIMEOUT: float | None = 10.0
    # A stream that breaks after text reached the client is continued on the next
    # provider (assistant prefill, or this instruction where prefill is refused).
    CONTINUE_STREAMS: bool = True
    CONTINUATION_INSTRUCTION: str = (
        "Your previous answer was cut off. Continue it exactly where it stopped, without "
        "repeating anything already written and without any preamble.")
    # While a breaker is open, one cheap probe per interval for the whole deployment (a
    # Redis lease picks the prober) brings a recovered provider back quickly; None: off.
    ACTIVE_PROBE_SECONDS: float | None = 5.0
    # Hedged requests for these aliases: when the first provider's first token is later
    # than its recent p95 (HEDGE_DEFAULT_DELAY_SECONDS until it has figures), the next
    # provider starts too and the first to produce a token wins. Extra upstream calls
    # are capped at HEDGE_BUDGET (a fraction of requests) deployment-wide.
    HEDGED_ALIASES: list[str] = field(default_factory=list)
    HEDGE_BUDGET: float = 0.1
    HEDGE_DEFAULT_DELAY_SECONDS: float = 1.0
    ADAPTERS: dict[str, str] = field(default_factory=dict)
    ASYNC_TRANSPORT: str | None = None
    SYNC_TRANSPORT: str | None = None
    # Fallback tiers.
    CACHE_ENABLED: bool = True
    CACHE_ALIAS: str = "default"
    CACHE_TTL: int | None = 24 * 3600
    DEGRADED_MESSAGE: str | None = None
    RETRY_AFTER_SECONDS: float = 30
    # Names a client may send as "model" that route to a group of providers
    # (None: every enabled provider), e.g. {"auto": None, "fast": ["groq", "ollama"]}.
    MODEL_ALIASES: dict[str, list[str] | None] = field(default_factory=lambda: {"auto": None})
    # The HTTP API. Anonymous loopback access is for a laptop demo only: behind a proxy
    # on the same host every client looks like loopback (check flexiai.W003).
    ALLOW_ANONYMOUS_LOOPBACK: bool = False
    API_KEY_CACHE_SECONDS: float = 5.0
    # Looked-up keys kept per worker (least recently used dropped first).
    API_KEY_CACHE_SIZE: int = 1024
    # Requests per minute for logged-in users (each user) and for anonymous loopback
    # callers (one budget for all of them); 0 for no limit. Keys have their own limit.
    USER_RATE_LIMIT_PER_MINUTE: int = 60
    ANONYMOUS_RATE_LIMIT_PER_MINUTE: int = 60
    # While Redis is down: "share" counts in each worker with its share of the limit
    # (limit / RATE_LIMIT_FALLBACK_WORKERS, or / the workers last heard from when None);
    # "refuse" answers 503 until the shared count is back.
    RATE_LIMIT_FALLBACK: Literal["share", "refuse"] = "share"
    RATE_LIMIT_FALLBACK_WORKERS: int | None = None
    # A request field a provider kind cannot carry (e.g. logit_bias for Anthropic):
    # False skips that provider (a 400 naming the fields when none can serve); True sends
    # the request without them and names them in X-FlexiAI-Dropped-Params. ``user`` and
    # ``metadata`` are advisory: always dropped that way.
    DROP_UNSUPPORTED_PARAMS: bool = False
    MAX_BODY_BYTES: int = 1024 * 1024
    MAX_TOKENS_LIMIT: int = 128_000
    MAX_MESSAGES: int = 1000
    # The answer cache: "caller" keeps each API key's / user's answers apart, "shared"
    # lets every caller receive any caller's cached answer for the same request.
    CACHE_SCOPE: Literal["caller", "shared"] = "caller"
    # Sessions (POST /v1/sessions, X-FlexiAI-Session): idle seconds before a session is
    # forgotten (each use refreshes it), and whether a request's "user" field names its
    # session when it sends no X-FlexiAI-Session (that session is made on first use).
    SESSION_TTL_SECONDS: float = 3600.0
    SESSION_FROM_USER_FIELD: bool = False
    # Routing strategy per model alias: "priority" (the default), "least-busy" (lowest
    # deployment-wide in-flight relative to capacity), "latency" (lowest recent time to
    # first token, all workers' windows together) or "overflow" (OVERFLOW_TIERS in order:
    # a tier takes new sessions until its in-flight reaches OVERFLOW_AT of its capacity).
    ROUTING: dict[str, str] = field(default_factory=dict)
    OVERFLOW_TIERS: list[str] = field(default_factory=lambda: ["large", "small"])
    OVERFLOW_AT: float = 1.0
    # Over-provisioning: while a tier's provider is warming, overflow treats that tier as
    # full and routes to the next tier early.
    OVERFLOW_WHILE_WARMING: bool = True
    # In-flight slots are leases: a worker renews its own; a killed worker's slots free
    # themselves after this many seconds.
    INFLIGHT_LEASE_SECONDS: float = 10.0
    # Warming providers (Provider.warming): this fraction of requests still goes to them
    # (0: none) and a warm-up probe runs every WARMUP_PROBE_SECONDS until one answers
    # (None: no probes; the flag is then cleared by hand).
    WARMING_TRICKLE: float = 0.0
    WARMUP_PROBE_SECONDS: float | None = 5.0
    # The capacity planner (manage.py flexiai_capacity): see the README's "Capacity
    # planning" for the keys (interval, per-tier lead times and bounds, thresholds, hook).
    CAPACITY_PLANNER: dict[str, Any] = field(default_factory=dict)
    # OpenTelemetry spans for each request and provider attempt (GenAI semantic
    # conventions). Needs the "tracing" extra (opentelemetry-api); off costs nothing.
    TRACING: bool = False
    # Origins (scheme://host[:port]) allowed to open the status page's WebSocket besides
    # the page's own origin. None: CSRF_TRUSTED_ORIGINS.
    WEBSOCKET_ALLOWED_ORIGINS: list[str] | None = None
    # Provider.api_key_env must match this: env-sourced keys can't name Django's
    # SECRET_KEY or any other variable that is not an API key.
    API_KEY_ENV_PATTERN: str = r"^[A-Z][A-Z0-9_]*_API_KEY$"
    # Provider API keys are encrypted at rest with these keys (first one encrypts, all
    # decrypt, for rotation). Empty: a key derived from SECRET_KEY.
    ENCRYPTION_KEYS: list[str] = field(default_factory=list, repr=False)
    # Shared state (used by the Redis store and broadcast).
    REDIS_ALIAS: str = "default"
    # Sentinels as [(host, port), ...] for a store/limiter/hedge budget given a ``url``
    # (not an alias): the URL's host then names the master (redis://mymaster/0). With an
    # alias, Sentinel comes from that django-redis entry instead. None: plain URLs.
    REDIS_SENTINELS: list[tuple[str, int]] | None = None
    CHANNEL_LAYER: str = "default"
    CHANNEL_GROUP: str = "flexiai"
    # Seconds between a worker's full re-reads of shared breaker state (broadcasts are
    # at-most-once; this bounds how long a lost one can matter).
    RESYNC_SECONDS: float = 0.5
    # The admin status page: transitions kept in the database (oldest pruned; 0 keeps
    # none), and each worker's recent latency/success window, published this often.
    # Graceful drain on SIGTERM (flexiai_django.drain): /health/ready answers 503 at once
    # and the server keeps serving this long before it closes its socket, so load
    # balancers and Kubernetes endpoints stop sending first; 0: stop at once. Under
    # gunicorn in-flight requests then get its graceful_timeout; under daphne (which has
    # none) DRAIN_TIMEOUT_SECONDS.
    DRAIN_SECONDS: float = 5.0
    DRAIN_TIMEOUT_SECONDS: float = 20.0
    # flexiai_django.asgi.get_asgi_application: requests under these paths go through a
    # lean Django handler (only LEAN_MIDDLEWARE, no thread hops), the rest through the
    # project's full MIDDLEWARE, in one process; a session caller (cookie, no
    # Authorization) takes the full stack. Empty: everything through the full stack.
    LEAN_PATHS: list[str] = field(default_factory=lambda: ["/v1", "/health", "/metrics"])
    # The project's middleware the lean path keeps (an allow-list, in the project's
    # order): async-capable ones (a MiddlewareMixin one still hops threads), or
    # Django's security, clickjacking and common middleware, run on the event loop.
    LEAN_MIDDLEWARE: list[str] = field(default_factory=lambda: [
        "flexiai_django.middleware.FlexiAIMiddleware",
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
        "corsheaders.middleware.CorsMiddleware",
    ])
    HISTORY_LIMIT: int = 1000
    STATS_WINDOW_SECONDS: float = 60.0
    STATS_PUBLISH_SECONDS: float = 2.0

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _default(f: Any) -> Any:
    return f.default_factory() if f.default is MISSING else f.default


#: Every known key and its default, as a plain dict (checks, docs, tests).
DEFAULTS: dict[str, Any] = {f.name: _default(f) for f in fields(FlexiAISettings)}


def user_settings() -> Any:
    """The raw ``FLEXIAI`` value as the project wrote it (may be malformed: checks say so)."""
    return getattr(django_settings, "FLEXIAI", {})


@cache
def get_settings() -> FlexiAISettings:
    """The merged settings; unknown keys are left out (check flexiai.W001 names them)."""
    user = user_settings()
    known = {k: v for k, v in user.items() if k in DEFAULTS} if isinstance(user, dict) else {}
    return FlexiAISettings(**known)


@receiver(setting_changed)
def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting in {"FLEXIAI", "SECRET_KEY"}:
        get_settings.cache_clear()
        from flexiai_django import signals

        signals.settings_reloaded.send(sender=FlexiAISettings)
