"""Who is calling: a Bearer API key, a logged-in user, or (laptop demos only) loopback.

* Keys: the token's format is checked before anything is looked up, keys are found by
  their public prefix and compared by hash in constant time. A bounded per-process
  cache of real keys (size ``API_KEY_CACHE_SIZE``, age ``API_KEY_CACHE_SECONDS``) keeps
  the database off the hot path; unknown prefixes are never cached, so bogus tokens
  cannot grow a worker's memory.
* Logged-in users (Django sessions) get the ``chat`` scope, and ``admin`` when they may
  change providers; their unsafe requests must pass Django's CSRF check.
* Anonymous loopback (``ALLOW_ANONYMOUS_LOOPBACK``) admits only a direct connection
  from 127.0.0.1 or ::1 carrying no proxy header and no foreign ``Origin``: a proxy or
  sidecar on the same host, or a web page in the laptop's browser, is not "loopback".

Every principal counts against a rate limit shared by all workers through Redis: its
key's, ``USER_RATE_LIMIT_PER_MINUTE`` per user, ``ANONYMOUS_RATE_LIMIT_PER_MINUTE`` for
anonymous callers together.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.middleware.csrf import CsrfViewMiddleware

from flexiai_django.conf import get_settings
from flexiai_django.responses import error_response, retry_after

View = Callable[..., Coroutine[Any, Any, HttpResponseBase]]

#: ``fxa-<12 hex>-<43 url-safe base64>``, exactly as :meth:`ApiKey.issue` makes them.
TOKEN = re.compile(r"fxa-([0-9a-f]{12})-[A-Za-z0-9_-]{43}")
#: Headers a proxy adds: a request carrying one did not come straight from this host.
PROXY_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP",
                 "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PROTO", "HTTP_VIA",
                 "HTTP_X_CLIENT_IP", "HTTP_TRUE_CLIENT_IP", "HTTP_CF_CONNECTING_IP")
LOOPBACK = frozenset({"127.0.0.1", "::1"})
#: The scope key under which :class:`flexiai_django.asgi.ASGIHandler` hands over a
#: principal it authenticated before reading the body.
SCOPE_KEY = "flexiai.principal"
MANAGE_PERMISSION = "flexiai_django.change_provider"


@dataclass(frozen=True)
class Principal:
    id: str
    name: str
    scopes: frozenset[str]
    rate_limit_per_minute: int = 0
    via: Literal["key", "session", "anonymous"] = "key"


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str
    code: str
    retry_after: float | None = None


# -- the key cache -----------------------------------------------------------------------


class KeyCache:
    """Real keys by prefix, least recently used dropped first, each trusted for ``ttl``."""

    def __init__(self) -> None:
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, prefix: str, ttl: float, now: float) -> Any:
        with self._lock:
            entry = self._entries.get(prefix)
            if entry is None:
                return None
            if now - entry[0] >= ttl:
                del self._entries[prefix]
                return None
            self._entries.move_to_end(prefix)
            return entry[1]

    def put(self, prefix: str, key: Any, size: int, now: float) -> None:
        with self._lock:
            self._entries[prefix] = (now, key)
            self._entries.move_to_end(prefix)
            while len(self._entries) > size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


_keys = KeyCache()


def _load_key(prefix: str) -> Any:
    from flexiai_django.models import ApiKey

    return ApiKey.objects.filter(prefix=prefix, enabled=True).first()


async def _key(prefix: str) -> Any:
    settings, now = get_settings(), time.monotonic()
    key = _keys.get(prefix, settings.API_KEY_CACHE_SECONDS, now)
    if key is None:
        key = await database_sync_to_async(_load_key)(prefix)
        if key is not None:
            _keys.put(prefix, key, settings.API_KEY_CACHE_SIZE, now)
    return key


def forget_keys(**kwargs: Any) -> None:
    """Drop every cached key (a key was saved or deleted: revoke at once in this process)."""
    _keys.clear()


# -- who is calling ----------------------------------------------------------------------


def is_direct_loopback(request: HttpRequest) -> bool:
    """A connection from this host's loopback address that no proxy forwarded."""
    meta = request.META
    return meta.get("REMOTE_ADDR") in LOOPBACK and not any(h in meta for h in PROXY_HEADERS)


def _same_origin(request: HttpRequest) -> bool:
    """No ``Origin`` (curl, SDKs) or the page's own allowed host: no foreign page's request.

    ``get_host()`` checks ``ALLOWED_HOSTS``, so a rebinding domain is not "the same host".
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    try:
        host = request.get_host()
    except DisallowedHost:
        return False
    return urlsplit(origin).netloc.lower() == host.lower()


def _anonymous_allowed(request: HttpRequest) -> bool:
    return (get_settings().ALLOW_ANONYMOUS_LOOPBACK and is_direct_loopback(request)
            and _same_origin(request))


def _anonymous() -> Principal:
    return Principal("anonymous", "anonymous (loopback)", frozenset({"chat"}),
                     get_settings().ANONYMOUS_RATE_LIMIT_PER_MINUTE, via="anonymous")


class _CsrfCheck(CsrfViewMiddleware):
    """Django's CSRF rules, asked for a verdict instead of a 403 page."""

    def _reject(self, request: HttpRequest, reason: str) -> Any:
        return reason


def _csrf_failure(request: HttpRequest) -> str | None:
    if request.method in ("GET", "HEAD", "OPTIONS", "TRACE"):
        return None
    reason = _CsrfCheck(lambda r: None).process_view(request, None, (), {})  # type: ignore[arg-type]
    return reason if isinstance(reason, str) else None


async def _session_user(request: HttpRequest) -> Any:
    auser = getattr(request, "auser", None)  # absent without AuthenticationMiddleware
    user = await auser() if auser else None
    return user if user is not None and user.is_authenticated and user.is_active else None


async def _key_principal(token: str) -> Principal | Refusal:
    match = TOKEN.fullmatch(token)
    if match is None:
        return Refusal(401, "Invalid API key format: send 'Authorization: Bearer fxa-…'.",
                       "invalid_api_key")
    key = await _key(match.group(1))
    if key is None or not key.matches(token):
        return Refusal(401, "Incorrect API key provided.", "invalid_api_key")
    return Principal(f"key:{key.pk}", key.name, key.scope_set, key.rate_limit_per_minute)


async def authenticate(request: HttpRequest) -> Principal | Refusal:
    """The caller's identity from a Bearer key, the session, or anonymous loopback.

    Reads headers and the session only, never the body. A session user's unsafe request
    without a valid CSRF token is refused (403).
    """
    header = request.headers.get("Authorization", "")
    if header:
        token = bearer_key(header)
        if token is not None:
            return await _key_principal(token)
        if not _anonymous_allowed(request):
            return Refusal(401, "Invalid API key format: send 'Authorization: Bearer fxa-…'.",
                           "invalid_api_key")
        return _anonymous()  # an SDK's placeholder key on a demo laptop
    user = await _session_user(request)
    if user is not None:
        reason = _csrf_failure(request)
        if reason is not None:
            return Refusal(403, f"CSRF verification failed ({reason}). Send the csrftoken "
                           "cookie's value as X-CSRFToken, or use an API key.", "csrf_failed")
        scopes = {"chat"}
        if user.is_staff and await user.ahas_perm(MANAGE_PERMISSION):
            scopes.add("admin")
        return Principal(f"user:{user.pk}", user.get_username(), frozenset(scopes),
                         get_settings().USER_RATE_LIMIT_PER_MINUTE, via="session")
    if _anonymous_allowed(request):
        return _anonymous()
    return Refusal(401, "You didn't provide an API key: send 'Authorization: Bearer fxa-…' "
                   "or log in.", "missing_api_key")


def has_session_cookie(request: HttpRequest) -> bool:
    from django.conf import settings

    return settings.SESSION_COOKIE_NAME in request.COOKIES


async def authenticate_early(request: HttpRequest, scope: str) -> Principal | Refusal | None:
    """Before the body is read, from the headers alone; ``None``: decide after reading.

    A session cookie defers to the view (the session needs Django's middleware); an
    API key or no credential at all is settled here, so a stranger's body is never read.
    """
    if not request.headers.get("Authorization") and has_session_cookie(request):
        return None
    return _scoped(await authenticate(request), scope)


def bearer_key(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer fxa-…`` header; None for anything else."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token.startswith("fxa-") else None


async def authenticate_key(token: str, scope: str) -> Principal | Refusal:
    """:func:`authenticate_early` for an API key read off the ASGI headers: the API's
    usual caller, settled without building a request object."""
    return _scoped(await _key_principal(token), scope)


def _scoped(principal: Principal | Refusal, scope: str) -> Principal | Refusal:
    if isinstance(principal, Principal) and scope not in principal.scopes:
        return _lacks(scope)
    return principal


def _lacks(scope: str) -> Refusal:
    if scope == "admin":
        return Refusal(403, "This needs an API key with the 'admin' scope, or a staff user "
                       "who may change providers.", "insufficient_scope")
    return Refusal(403, f"This key lacks the '{scope}' scope.", "insufficient_scope")


def cache_scope(principal: Principal) -> str:
    """Whose cached answers a principal may receive (``CACHE_SCOPE``)."""
    return principal.id if get_settings().CACHE_SCOPE == "caller" else ""


async def check_rate(principal: Principal) -> Refusal | None:
    if principal.rate_limit_per_minute <= 0:
        return None
    from flexiai_django.ratelimit import get_limiter

    decision = await get_limiter().ahit(principal.id, principal.rate_limit_per_minute)
    if decision.allowed:
        return None
    if decision.unavailable:
        return Refusal(503, "The rate limiter cannot reach its store; try again shortly.",
                       "rate_limiter_unavailable", retry_after=decision.retry_after)
    return Refusal(429, f"Rate limit of {decision.limit} requests per minute reached.",
                   "rate_limit_exceeded", retry_after=decision.retry_after)


def refusal_response(refusal: Refusal) -> HttpResponseBase:
    headers = {} if refusal.retry_after is None else {
        "Retry-After": retry_after(refusal.retry_after)}
    kind = {429: "rate_limit_error", 503: "service_unavailable"}.get(
        refusal.status, "invalid_request_error")
    return error_response(refusal.status, refusal.message, type_=kind, code=refusal.code,
                          headers=headers)


def principal_of(request: HttpRequest) -> Principal:
    """The principal :func:`require_scope` admitted for this request."""
    principal: Principal = request.flexiai_principal  # type: ignore[attr-defined]
    return principal


def require_scope(scope: str) -> Callable[[View], View]:
    """Decorate an async view: authenticate, check the scope and the rate limit.

    The view finds the caller with :func:`principal_of`. The decorated view carries
    ``flexiai_scope``, which lets the ASGI handler refuse strangers before reading the body.
    """

    def decorate(view: View) -> View:
        @functools.wraps(view)
        async def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            early = getattr(request, "scope", {}).get(SCOPE_KEY)
            principal = _scoped(early if early is not None else await authenticate(request),
                                scope)
            if isinstance(principal, Principal):
                refusal = await check_rate(principal)
                if refusal is None:
                    request.flexiai_principal = principal  # type: ignore[attr-defined]
                    return await view(request, *args, **kwargs)
                principal = refusal
            return refusal_response(principal)

        wrapped.flexiai_scope = scope  # type: ignore[attr-defined]
        return wrapped

    return decorate
