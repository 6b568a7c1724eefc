"""The ``FLEXIAI`` settings dict, merged over documented defaults.

Read through :func:`get_settings` only, never at import time: the merged result is
cached and dropped whenever Django's ``setting_changed`` fires (``override_settings``).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed
from django.dispatch import receiver

DEFAULTS: dict[str, Any] = {
    # Where breaker state lives. The default keeps it in this process; the Redis
    # store shares one state across the deployment.
    "BREAKER_STORE": {
        "BACKEND": "flexiai_django.breakers.memory.LocalBreakerStore",
        "OPTIONS": {},
    },
    # Breaker defaults; each provider row may override them.
    "FAILURE_THRESHOLD": 5,
    "SUCCESS_THRESHOLD": 1,
    "OPEN_SECONDS": 30.0,
    "MAX_OPEN_SECONDS": 300.0,
    "OPEN_JITTER": 0.1,
    "HALF_OPEN_MAX_CALLS": 1,
    "PROBE_TTL_SECONDS": 60.0,
    # Provider calls.
    "DEFAULT_TIMEOUT": 30.0,
    "PROVIDER_REFRESH_SECONDS": 1.0,
    "ADAPTERS": {},
    "ASYNC_TRANSPORT": None,
    "SYNC_TRANSPORT": None,
    # Fallback tiers.
    "CACHE_ENABLED": True,
    "CACHE_ALIAS": "default",
    "CACHE_TTL": 24 * 3600,
    "DEGRADED_MESSAGE": None,
    "RETRY_AFTER_SECONDS": 30,
    # Names a client may send as "model" that route to a group of providers
    # (None: every enabled provider), e.g. {"auto": None, "fast": ["groq", "ollama"]}.
    "MODEL_ALIASES": {"auto": None},
    # The HTTP API. Anonymous loopback access is for a laptop demo only: behind a proxy
    # on the same host every client looks like loopback (check flexiai.W003).
    "ALLOW_ANONYMOUS_LOOPBACK": False,
    "API_KEY_CACHE_SECONDS": 5.0,
    # Looked-up keys kept per worker (least recently used dropped first).
    "API_KEY_CACHE_SIZE": 1024,
    # Requests per minute for logged-in users (each user) and for anonymous loopback
    # callers (one budget for all of them); 0 for no limit. Keys have their own limit.
    "USER_RATE_LIMIT_PER_MINUTE": 60,
    "ANONYMOUS_RATE_LIMIT_PER_MINUTE": 60,
    # While Redis is down: "share" counts in each worker with its share of the limit
    # (limit / RATE_LIMIT_FALLBACK_WORKERS, or / the workers last heard from when None);
    # "refuse" answers 503 until the shared count is back.
    "RATE_LIMIT_FALLBACK": "share",
    "RATE_LIMIT_FALLBACK_WORKERS": None,
    "MAX_BODY_BYTES": 1024 * 1024,
    "MAX_TOKENS_LIMIT": 128_000,
    "MAX_MESSAGES": 1000,
    # The answer cache: "caller" keeps each API key's / user's answers apart, "shared"
    # lets every caller receive any caller's cached answer for the same request.
    "CACHE_SCOPE": "caller",
    # Origins (scheme://host[:port]) allowed to open the status page's WebSocket besides
    # the page's own origin. None: CSRF_TRUSTED_ORIGINS.
    "WEBSOCKET_ALLOWED_ORIGINS": None,
    # Provider.api_key_env must match this: env-sourced keys can't name Django's
    # SECRET_KEY or any other variable that is not an API key.
    "API_KEY_ENV_PATTERN": r"^[A-Z][A-Z0-9_]*_API_KEY$",
    # Provider API keys are encrypted at rest with these keys (first one encrypts,
    # all decrypt, for rotation). Empty: a key derived from SECRET_KEY.
    "ENCRYPTION_KEYS": [],
    # Shared state (used by the Redis store and broadcast).
    "REDIS_ALIAS": "default",
    "CHANNEL_LAYER": "default",
    "CHANNEL_GROUP": "flexiai",
    # Seconds between a worker's full re-reads of shared breaker state (broadcasts are
    # at-most-once; this bounds how long a lost one can matter).
    "RESYNC_SECONDS": 0.5,
    # The admin status page: transitions kept in the database (oldest pruned; 0 keeps
    # none), and each worker's recent latency/success window, published this often.
    "HISTORY_LIMIT": 1000,
    "STATS_WINDOW_SECONDS": 60.0,
    "STATS_PUBLISH_SECONDS": 2.0,
}


class FlexiAISettings:
    """Attribute access over the merged dict, so typos fail loudly."""

    def __init__(self, user: dict[str, Any]) -> None:
        self._values = {**DEFAULTS, **user}
        self.__dict__.update(self._values)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"Unknown FLEXIAI setting {name!r}")

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)


def user_settings() -> Any:
    """The raw ``FLEXIAI`` value as the project wrote it (may be malformed: checks say so)."""
    return getattr(django_settings, "FLEXIAI", {})


@cache
def get_settings() -> FlexiAISettings:
    user = user_settings()
    return FlexiAISettings(user if isinstance(user, dict) else {})


@receiver(setting_changed)
def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting in {"FLEXIAI", "SECRET_KEY"}:
        get_settings.cache_clear()
        from flexiai_django import signals

        signals.settings_reloaded.send(sender=FlexiAISettings)
