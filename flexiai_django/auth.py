"""Who is calling the HTTP API: a Bearer API key, a staff session, or (if allowed) loopback.

Keys are looked up by their public prefix and compared by hash in constant time; a
per-process cache of a few seconds keeps the database off the hot path (a revoked key
stops working within ``API_KEY_CACHE_SECONDS``). Per-key rate limits are shared by
every worker through Redis.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.http import HttpRequest
from django.http.response import HttpResponseBase

from flexiai_django.conf import get_settings

View = Callable[..., Coroutine[Any, Any, HttpResponseBase]]


@dataclass(frozen=True)
class Principal:
    id: str
    name: str
    scopes: frozenset[str]
    rate_limit_per_minute: int = 0


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str
    code: str
    retry_after: float | None = None


_keys: dict[str, tuple[float, Any]] = {}


def _load_key(prefix: str) -> Any:
    from flexiai_django.models import ApiKey

    return ApiKey.objects.filter(prefix=prefix, enabled=True).first()


async def _key(prefix: str) -> Any:
    cached = _keys.get(prefix)
    if cached and time.monotonic() - cached[0] < get_settings().API_KEY_CACHE_SECONDS:
        return cached[1]
    key = await database_sync_to_async(_load_key)(prefix)
    _keys[prefix] = (time.monotonic(), key)
    return key


def forget_keys(**kwargs: Any) -> None:
    _keys.clear()


def _loopback(request: HttpRequest) -> bool:
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


def _anonymous_allowed(request: HttpRequest) -> bool:
    return bool(get_settings().ALLOW_ANONYMOUS_LOOPBACK) and _loopback(request)


async def authenticate(request: HttpRequest) -> Principal | Refusal:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    parts = token.split("-")
    ours = scheme.lower() == "bearer" and len(parts) >= 3 and parts[0] == "fxa"
    if header and not ours and _anonymous_allowed(request):
        header = ""  # an SDK's placeholder key on a demo's loopback: treat as anonymous
    if header:
        if not ours:
            return Refusal(401, "Invalid API key format: send 'Authorization: Bearer fxa-…'.",
                           "invalid_api_key")
        key = await _key(parts[1])
        if key is None or not key.matches(token):
            return Refusal(401, "Incorrect API key provided.", "invalid_api_key")
        return Principal(f"key:{key.pk}", key.name, key.scope_set, key.rate_limit_per_minute)
    auser = getattr(request, "auser", None)  # absent without AuthenticationMiddleware
    user = await auser() if auser else None
    if user is not None and user.is_active and user.is_staff:
        return Principal(f"user:{user.pk}", user.get_username(), frozenset({"chat", "admin"}))
    if _anonymous_allowed(request):
        return Principal("anonymous", "anonymous (loopback)", frozenset({"chat"}))
    return Refusal(401, "You didn't provide an API key: send 'Authorization: Bearer fxa-…'.",
                   "missing_api_key")


async def check_rate(principal: Principal) -> Refusal | None:
    if principal.rate_limit_per_minute <= 0:
        return None
    from flexiai_django.ratelimit import get_limiter

    decision = await get_limiter().ahit(principal.id, principal.rate_limit_per_minute)
    if decision.allowed:
        return None
    return Refusal(429, f"Rate limit of {decision.limit} requests per minute reached.",
                   "rate_limit_exceeded", retry_after=decision.retry_after)


def require_scope(scope: str) -> Callable[[View], View]:
    """Decorate an async view: authenticate, check the scope and the rate limit."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        async def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            from flexiai_django.views.chat import error_response

            principal = await authenticate(request)
            refusal = principal if isinstance(principal, Refusal) else None
            if isinstance(principal, Principal):
                if scope not in principal.scopes:
                    refusal = Refusal(403, f"This key lacks the '{scope}' scope.",
                                      "insufficient_scope")
                else:
                    refusal = await check_rate(principal)
            if refusal is not None:
                headers = {}
                if refusal.retry_after is not None:
                    headers["Retry-After"] = str(max(1, math.ceil(refusal.retry_after)))
                kind = "rate_limit_error" if refusal.status == 429 else "invalid_request_error"
                return error_response(refusal.status, refusal.message, type_=kind,
                                      code=refusal.code, headers=headers)
            request.flexiai_principal = principal  # type: ignore[attr-defined]
            return await view(request, *args, **kwargs)

        return wrapped

    return decorate
