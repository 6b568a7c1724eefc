"""System checks: one stable id per FLEXIAI setting, each with a hint."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core import checks
from django.utils.module_loading import import_string

from flexiai_django.capacity import config as capacity_config
from flexiai_django.conf import DEFAULTS, user_settings

#: The routing strategies a model alias may use (FLEXIAI["ROUTING"]).
ROUTING_STRATEGIES = ("priority", "least-busy", "latency", "overflow")
_GROUP_NAME = re.compile(r"^[a-zA-Z0-9_.\-]{1,99}$")
_ORIGIN = re.compile(
    r"^https?://((\*\.)?[A-Za-z0-9.\-]+|\[[0-9a-fA-F:.]+\])(:\d{1,5})?$")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _int_at_least(low: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


_positive_int = _int_at_least(1)


def _optional_positive(value: Any) -> bool:
    return value is None or (_is_number(value) and value > 0)


def _importable(path: Any) -> bool:
    try:
        import_string(path)
    except (ImportError, TypeError, ValueError, AttributeError):
        return False
    return True


def _origin(value: Any) -> bool:
    """``scheme://host[:port]``, as browsers send it (a ``*.`` subdomain wildcard allowed)."""
    return isinstance(value, str) and bool(_ORIGIN.match(value))


def _regex(value: Any) -> bool:
    if not isinstance(value, str) or not value:
        return False
    try:
        re.compile(value)
    except re.error:
        return False
    return True


def _store_spec(value: Any) -> bool:
    return (isinstance(value, dict) and _importable(value.get("BACKEND"))
            and isinstance(value.get("OPTIONS", {}), dict))


def _adapters(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and _importable(v) for k, v in value.items()
    )


def _sentinels(value: Any) -> bool:
    return isinstance(value, list | tuple) and bool(value) and all(
        isinstance(pair, list | tuple) and len(pair) == 2 and isinstance(pair[0], str)
        and bool(pair[0]) and _positive_int(pair[1]) for pair in value)


@dataclass(frozen=True)
class Rule:
    key: str
    id: str
    valid: Callable[[Any], bool]
    hint: str
    secret: bool = False


RULES = (
    Rule("BREAKER_STORE", "flexiai.E002", _store_spec,
         'A dict {"BACKEND": "dotted.path.Store", "OPTIONS": {...}} whose BACKEND imports.'),
    Rule("FAILURE_THRESHOLD", "flexiai.E003", _positive_int, "An integer of at least 1."),
    Rule("SUCCESS_THRESHOLD", "flexiai.E004", _positive_int, "An integer of at least 1."),
    Rule("OPEN_SECONDS", "flexiai.E005", lambda v: _is_number(v) and v >= 0,
         "A number of seconds, 0 or more."),
    Rule("MAX_OPEN_SECONDS", "flexiai.E006", lambda v: _is_number(v) and v >= 0,
         "A number of seconds, 0 or more, and not below OPEN_SECONDS."),
    Rule("OPEN_JITTER", "flexiai.E007", lambda v: _is_number(v) and 0 <= v < 1,
         "A fraction from 0 (no jitter) to below 1."),
    Rule("HALF_OPEN_MAX_CALLS", "flexiai.E008", _positive_int, "An integer of at least 1."),
    Rule("PROBE_TTL_SECONDS", "flexiai.E009", lambda v: _is_number(v) and v > 0,
         "A positive number of seconds, longer than your slowest provider timeout."),
    Rule("DEFAULT_TIMEOUT", "flexiai.E010", lambda v: _is_number(v) and v > 0,
         "A positive number of seconds."),
    Rule("PROVIDER_REFRESH_SECONDS", "flexiai.E011", lambda v: _is_number(v) and v >= 0,
         "A number of seconds, 0 or more."),
    Rule("ADAPTERS", "flexiai.E012", _adapters,
         'A dict {"kind": "dotted.path.AdapterClass"} whose paths import.'),
    Rule("ASYNC_TRANSPORT", "flexiai.E013", lambda v: v is None or _importable(v),
         "None, or the dotted path of a callable returning an httpx.AsyncBaseTransport."),
    Rule("SYNC_TRANSPORT", "flexiai.E014", lambda v: v is None or _importable(v),
         "None, or the dotted path of a callable returning an httpx.BaseTransport."),
    Rule("CACHE_ENABLED", "flexiai.E015", lambda v: isinstance(v, bool), "True or False."),
    Rule("CACHE_ALIAS", "flexiai.E016", lambda v: v in settings.CACHES,
         "The name of an entry in CACHES."),
    Rule("CACHE_TTL", "flexiai.E017", lambda v: v is None or _positive_int(v),
         "Seconds as a positive integer, or None to keep answers until evicted."),
    Rule("DEGRADED_MESSAGE", "flexiai.E018",
         lambda v: v is None or (isinstance(v, str) and bool(v)),
         "None to skip the degraded tier, or a non-empty message."),
    Rule("RETRY_AFTER_SECONDS", "flexiai.E019", lambda v: _is_number(v) and v > 0,
         "A positive number of seconds."),
    Rule("ENCRYPTION_KEYS", "flexiai.E020",
         lambda v: isinstance(v, list | tuple) and all(isinstance(k, str) and k for k in v),
         "A list of non-empty secret strings (first encrypts); empty uses SECRET_KEY.",
         secret=True),
    Rule("REDIS_ALIAS", "flexiai.E021", lambda v: isinstance(v, str) and bool(v),
         "The name of a django-redis entry in CACHES."),
    Rule("REDIS_SENTINELS", "flexiai.E073", lambda v: v is None or _sentinels(v),
         'None, or a non-empty list of (host, port) pairs: [("10.0.0.5", 26379), ...].'),
    Rule("CHANNEL_GROUP", "flexiai.E022",
         lambda v: isinstance(v, str) and bool(_GROUP_NAME.match(v)),
         "ASCII letters, digits, hyphens, underscores and periods, under 100 characters."),
    Rule("CHANNEL_LAYER", "flexiai.E023",
         lambda v: isinstance(v, str) and v in getattr(settings, "CHANNEL_LAYERS", {}),
         "The name of an entry in CHANNEL_LAYERS."),
    Rule("RESYNC_SECONDS", "flexiai.E024", lambda v: _is_number(v) and v > 0,
         "A positive number of seconds (default 0.5)."),
    Rule("MODEL_ALIASES", "flexiai.E027",
         lambda v: isinstance(v, dict) and all(
             isinstance(k, str) and (g is None or (isinstance(g, list | tuple)
                                                  and all(isinstance(n, str) for n in g)))
             for k, g in v.items()),
         'A dict {"alias": None (all providers) or ["provider", ...]}.'),
    Rule("ALLOW_ANONYMOUS_LOOPBACK", "flexiai.E028", lambda v: isinstance(v, bool),
         "True or False."),
    Rule("API_KEY_CACHE_SECONDS", "flexiai.E029", lambda v: _is_number(v) and v >= 0,
         "Seconds a worker trusts a looked-up API key (revocations take this long)."),
    Rule("HISTORY_LIMIT", "flexiai.E030", _int_at_least(0),
         "An integer of at least 0 (0 keeps no history)."),
    Rule("STATS_WINDOW_SECONDS", "flexiai.E031", lambda v: _is_number(v) and v > 0,
         "A number of seconds above 0."),
    Rule("STATS_PUBLISH_SECONDS", "flexiai.E032", lambda v: _is_number(v) and v > 0,
         "A number of seconds above 0."),
    Rule("MAX_BODY_BYTES", "flexiai.E025", _positive_int,
         "A size in bytes; larger API request bodies get a 413."),
    Rule("MAX_TOKENS_LIMIT", "flexiai.E026", _positive_int,
         "The largest max_tokens the API accepts."),
    Rule("API_KEY_CACHE_SIZE", "flexiai.E033", _positive_int,
         "How many looked-up API keys a worker keeps: an integer of at least 1."),
    Rule("USER_RATE_LIMIT_PER_MINUTE", "flexiai.E034", _int_at_least(0),
         "Requests per minute per logged-in user: an integer, 0 for no limit."),
    Rule("ANONYMOUS_RATE_LIMIT_PER_MINUTE", "flexiai.E035", _int_at_least(0),
         "Requests per minute for anonymous loopback callers: an integer, 0 for no limit."),
    Rule("RATE_LIMIT_FALLBACK", "flexiai.E036", lambda v: v in ("share", "refuse"),
         '"share" (each worker admits its share of the limit while Redis is down) or '
         '"refuse" (503 until Redis answers).'),
    Rule("RATE_LIMIT_FALLBACK_WORKERS", "flexiai.E037", lambda v: v is None or _positive_int(v),
         "None (the workers last heard from) or the number of worker processes that "
         "share each limit."),
    Rule("MAX_MESSAGES", "flexiai.E038", _positive_int,
         "The most messages one API request may carry: an integer of at least 1."),
    Rule("CACHE_SCOPE", "flexiai.E039", lambda v: v in ("caller", "shared"),
         '"caller" (each key or user has its own cached answers) or "shared".'),
    Rule("WEBSOCKET_ALLOWED_ORIGINS", "flexiai.E040",
         lambda v: v is None or (isinstance(v, list | tuple) and all(_origin(o) for o in v)),
         'None (use CSRF_TRUSTED_ORIGINS) or a list like ["https://ops.example.com"].'),
    Rule("API_KEY_ENV_PATTERN", "flexiai.E041", _regex,
         r'A regular expression environment variable names must match, e.g. "^[A-Z_]+_API_KEY$".'),
    Rule("DROP_UNSUPPORTED_PARAMS", "flexiai.E042", lambda v: isinstance(v, bool),
         "True (send without the fields a provider cannot carry, and say so in a header) "
         "or False (skip that provider)."),
    Rule("MAX_RETRIES", "flexiai.E043", _int_at_least(0),
         "Retries of a transient failure on the same provider: an integer, 0 for none."),
    Rule("RETRY_BACKOFF_SECONDS", "flexiai.E044", lambda v: _is_number(v) and v >= 0,
         "The base of the jittered backoff between retries, in seconds (0 or more)."),
    Rule("RETRY_AFTER_CAP_SECONDS", "flexiai.E045", lambda v: _is_number(v) and v >= 0,
         "The longest Retry-After waited for before retrying, in seconds; longer hints "
         "fail over at once."),
    Rule("FIRST_TOKEN_TIMEOUT", "flexiai.E046", _optional_positive,
         "None, or the seconds a stream may take to its first token (below the provider "
         "timeout)."),
    Rule("STALL_TIMEOUT", "flexiai.E047", _optional_positive,
         "None, or the seconds a stream may stay silent between chunks."),
    Rule("CONTINUE_STREAMS", "flexiai.E048", lambda v: isinstance(v, bool),
         "True (continue a broken stream on the next provider) or False (end it with an "
         "error event)."),
    Rule("CONTINUATION_INSTRUCTION", "flexiai.E049",
         lambda v: isinstance(v, str) and bool(v.strip()),
         "A non-empty instruction asking the model to continue its cut-off answer."),
    Rule("ACTIVE_PROBE_SECONDS", "flexiai.E050", _optional_positive,
         "None (no active probes), or seconds between probes of an open breaker."),
    Rule("HEDGED_ALIASES", "flexiai.E051",
         lambda v: isinstance(v, list | tuple) and all(isinstance(a, str) for a in v),
         'A list of model aliases to hedge, e.g. ["auto"].'),
    Rule("HEDGE_BUDGET", "flexiai.E052", lambda v: _is_number(v) and 0 <= v <= 1,
         "The share of requests that may start a second upstream call, from 0 to 1."),
    Rule("HEDGE_DEFAULT_DELAY_SECONDS", "flexiai.E053", lambda v: _is_number(v) and v > 0,
         "Seconds to wait for a first token before hedging while no p95 is known."),
    Rule("DRAIN_SECONDS", "flexiai.E064", lambda v: _is_number(v) and 0 <= v <= 300,
         "Seconds to keep serving after SIGTERM with readiness 503, from 0 (stop at once) "
         "to 300; a few more than your load balancer's health-check interval."),
    Rule("DRAIN_TIMEOUT_SECONDS", "flexiai.E065", lambda v: _is_number(v) and v >= 0,
         "Seconds daphne lets in-flight requests finish after the drain (0 or more)."),
    Rule("LEAN_PATHS", "flexiai.E066", lambda v: isinstance(v, list | tuple) and all(
        isinstance(p, str) and p.startswith("/") for p in v),
         'A list of path prefixes starting with "/", e.g. ["/v1", "/health", "/metrics"]; '
         "[] serves every path with the full middleware stack."),
    Rule("LEAN_MIDDLEWARE", "flexiai.E067", lambda v: isinstance(v, list | tuple) and all(
        isinstance(p, str) and "." in p for p in v),
         "A list of dotted middleware paths: those of MIDDLEWARE the lean API path keeps."),
    Rule("SESSION_TTL_SECONDS", "flexiai.E076", lambda v: _is_number(v) and v > 0,
         "Seconds an idle session is kept (each use refreshes it): a number above 0."),
    Rule("SESSION_FROM_USER_FIELD", "flexiai.E077", lambda v: isinstance(v, bool),
         'True (a request\'s "user" field names its session) or False.'),
    Rule("ROUTING", "flexiai.E054",
         lambda v: isinstance(v, dict) and all(
             isinstance(k, str) and v[k] in ROUTING_STRATEGIES for k in v),
         'A dict of model alias to strategy, e.g. {"auto": "overflow"}; strategies: '
         + ", ".join(ROUTING_STRATEGIES) + "."),
    Rule("OVERFLOW_TIERS", "flexiai.E055",
         lambda v: isinstance(v, list | tuple) and len(v) >= 2 and len(set(v)) == len(v)
         and all(isinstance(t, str) and t for t in v),
         'Two or more distinct tier labels, filled in order, e.g. ["large", "small"].'),
    Rule("OVERFLOW_AT", "flexiai.E056", lambda v: _is_number(v) and 0 < v <= 1,
         "The share of a tier's capacity at which new sessions go to the next tier: "
         "above 0, at most 1."),
    Rule("OVERFLOW_WHILE_WARMING", "flexiai.E057", lambda v: isinstance(v, bool),
         "True (a tier with a warming provider counts as full) or False."),
    Rule("INFLIGHT_LEASE_SECONDS", "flexiai.E058", lambda v: _is_number(v) and v >= 1,
         "Seconds a killed worker's in-flight slots stay counted: 1 or more."),
    Rule("WARMING_TRICKLE", "flexiai.E059", lambda v: _is_number(v) and 0 <= v <= 1,
         "The share of requests a warming provider still gets, from 0 to 1."),
    Rule("WARMUP_PROBE_SECONDS", "flexiai.E060", _optional_positive,
         "Seconds between warm-up probes of a warming provider: above 0, or None (off)."),
    Rule("CAPACITY_PLANNER", "flexiai.E061", lambda v: isinstance(v, dict),
         'A dict of planner options, e.g. {"INTERVAL_SECONDS": 15, "TIERS": {...}}: see '
         "the README's capacity planning section."),
    Rule("TRACING", "flexiai.E080", lambda v: isinstance(v, bool),
         "True (OpenTelemetry spans, with the \"tracing\" extra installed) or False."),
)


def check_settings(**kwargs: Any) -> list[checks.CheckMessage]:
    user = user_settings()
    if not isinstance(user, dict):
        return [checks.Error("FLEXIAI must be a dict.", id="flexiai.E001",
                             hint="Set FLEXIAI = {...} in your settings, or leave it out.")]
    errors: list[checks.CheckMessage] = []
    unknown = sorted(set(user) - set(DEFAULTS))
    if unknown:
        errors.append(checks.Warning(
            f"Unknown FLEXIAI setting(s): {', '.join(map(str, unknown))}.", id="flexiai.W001",
            hint="Check the spelling against the configuration reference in the README."))
    merged = {**DEFAULTS, **user}
    for rule in RULES:
        value = merged[rule.key]
        if not rule.valid(value):
            shown = "(value hidden)" if rule.secret else repr(value)
            errors.append(checks.Error(f"FLEXIAI[{rule.key!r}] is invalid: {shown}.",
                                       id=rule.id, hint=rule.hint))
    errors += _capacity_planner_problems(merged["CAPACITY_PLANNER"])
    opened, capped = merged["OPEN_SECONDS"], merged["MAX_OPEN_SECONDS"]
    if _is_number(opened) and _is_number(capped) and capped < opened:
        errors.append(checks.Error("FLEXIAI['MAX_OPEN_SECONDS'] is below OPEN_SECONDS.",
                                   id="flexiai.E006", hint=RULES[5].hint))
    return errors


_PLANNER_HINTS = {
    "flexiai.E061": "See the README's capacity planning section for the keys and ranges.",
    "flexiai.E062": 'A webhook URL ("https://ops.example/scale") or a dotted path to a '
                    "callable that takes the decision.",
    "flexiai.E063": 'TIERS = {"large": {"LEAD_SECONDS": 180, "MIN": 1, "MAX": 4}, ...}.',
}


def _capacity_planner_problems(value: Any) -> list[checks.CheckMessage]:
    """Inside a CAPACITY_PLANNER dict: options (E061), the hook (E062), the tiers (E063)."""
    if not isinstance(value, dict):
        return []  # the E061 rule said so
    return [checks.Error(f"FLEXIAI['CAPACITY_PLANNER']: {text}.", id=check_id,
                         hint=_PLANNER_HINTS[check_id])
            for check_id, text in capacity_config.problems(value)]


def check_channel_layer(**kwargs: Any) -> list[checks.CheckMessage]:
    """channels-redis blocks 5 s per receive; a shorter socket timeout breaks the listener."""
    merged = {**DEFAULTS, **(user_settings() if isinstance(user_settings(), dict) else {})}
    layer = getattr(settings, "CHANNEL_LAYERS", {}).get(merged["CHANNEL_LAYER"])
    if not layer or "channels_redis.core" not in str(layer.get("BACKEND", "")):
        return []
    blocking = layer.get("CONFIG", {}).get("brpop_timeout", 5)
    for host in layer.get("CONFIG", {}).get("hosts") or ["redis://localhost:6379"]:
        timeout = host.get("socket_timeout") if isinstance(host, dict) else None
        if timeout is None or timeout <= blocking:
            return [checks.Warning(
                "The channel layer's Redis socket timeout is not above its blocking "
                f"receive ({blocking} s): broadcast listeners will keep reconnecting.",
                id="flexiai.W002",
                hint='Write each host as {"address": "redis://…", "socket_timeout": 10}.')]
    return []


def check_anonymous(**kwargs: Any) -> list[checks.CheckMessage]:
    user = user_settings()
    if isinstance(user, dict) and user.get("ALLOW_ANONYMOUS_LOOPBACK") and not settings.DEBUG:
        return [checks.Warning(
            "FLEXIAI['ALLOW_ANONYMOUS_LOOPBACK'] is on with DEBUG off.", id="flexiai.W003",
            hint="Behind a reverse proxy on the same host every client is loopback: "
                 "turn it off and issue API keys in the admin.")]
    return []


def check_redis_credentials(**kwargs: Any) -> list[checks.CheckMessage]:
    """``check --deploy``: a configured Redis that refuses our credentials or TLS settings
    (servers refuse to start on the same finding: flexiai_django.redis_credentials)."""
    from flexiai_django.redis_credentials import verify_redis_credentials

    return [checks.Error(message, id="flexiai.E070",
                         hint="Fix REDIS_URL (user, password, ssl_ca_certs).")
            for message in verify_redis_credentials()]


def register() -> None:
    checks.register(check_redis_credentials, "flexiai", deploy=True)
    checks.register(check_anonymous, "flexiai")
    checks.register(check_settings, "flexiai")
    checks.register(check_channel_layer, "flexiai")
