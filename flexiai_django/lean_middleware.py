"""The middleware of the lean API handler, and what lets it run without thread hops.

Under ASGI every ``MiddlewareMixin`` hook and every sync receiver of Django's request
signals runs through ``sync_to_async``: one thread hand-off each, fifteen per request
with a project's usual stack (``bench/README.md``). The API paths need none of the
session, message or CSRF machinery (they authenticate Bearer keys themselves and a
session caller is sent to the full stack), so :class:`flexiai_django.asgi.ASGIHandler`
builds a second middleware chain for them from this module:

* :func:`lean_middleware`: the project's ``MIDDLEWARE`` filtered to ``LEAN_MIDDLEWARE``,
  in the project's order (an allow-list, so a project's own security middleware is
  kept only where it says so);
* :class:`Inline`: Django middleware known to do no I/O (security headers, clickjacking,
  common) run on the event loop instead of in a thread;
* :func:`housekeeping_only`: whether a request signal's receivers are only Django's own
  per-thread housekeeping, which has nothing to do on the event loop's thread (no
  database connection lives there; ``database_sync_to_async`` closes old connections
  around each database call itself), so the signal can be sent without a hop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from asgiref.sync import markcoroutinefunction
from django.dispatch import Signal
from django.http import HttpRequest
from django.http.response import HttpResponseBase

#: Django middleware whose hooks only read the request and set headers: safe on the loop.
INLINE = frozenset({
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.common.CommonMiddleware",
})

GetResponse = Callable[[HttpRequest], Awaitable[HttpResponseBase]]


def lean_middleware(project: Iterable[str], allowed: Iterable[str]) -> list[str]:
    """The project's middleware that the API paths keep, in the project's order."""
    keep = set(allowed)
    return [path for path in project if path in keep]


class Inline:
    """A ``MiddlewareMixin`` without I/O, its hooks called on the event loop.

    Django would run ``process_request`` and ``process_response`` through
    ``sync_to_async`` (two thread hand-offs); these hooks only look at headers.
    """

    def __init__(self, middleware: type[Any], get_response: GetResponse) -> None:
        self.inner = middleware(get_response)
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        inner = self.inner
        response = inner.process_request(request) if hasattr(
            inner, "process_request") else None
        if response is None:
            response = await self.get_response(request)
        if hasattr(inner, "process_response"):
            response = inner.process_response(request, response)
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # process_view / process_exception, if any


def _housekeeping() -> frozenset[Callable[..., Any]]:
    from django.core.cache import close_caches
    from django.core.handlers.base import reset_urlconf
    from django.db import close_old_connections, reset_queries

    return frozenset({close_caches, reset_urlconf, close_old_connections, reset_queries})


def housekeeping_only(signal: Signal, sender: type[Any]) -> bool:
    """True when every receiver of ``signal`` is Django's per-thread housekeeping.

    Anything else (a project's or another app's receiver) may touch the database and
    must run as Django runs it, in the request's thread. Unknown internals: ``False``.
    The answer is kept until the signal's receivers change (asked twice per request).
    """
    try:
        connected = tuple(entry[0] for entry in signal.receivers)
    except Exception:
        return False
    kept = _answers.get((signal, sender))
    if kept is not None and kept[0] == connected:
        return kept[1]
    try:
        sync, asynchronous = signal._live_receivers(sender)
    except Exception:
        return False
    answer = not asynchronous and set(sync) <= _housekeeping()
    _answers[(signal, sender)] = (connected, answer)
    return answer


#: Per (signal, sender): the receivers' lookup keys when last asked, and the answer.
_answers: dict[tuple[Signal, type[Any]], tuple[tuple[Any, ...], bool]] = {}


def chain(paths: Sequence[str], innermost: GetResponse,
          load: Callable[[str], Any]) -> tuple[GetResponse, list[Any]]:
    """The async middleware chain over ``innermost``, outermost first, and its instances.

    A path in :data:`INLINE` is wrapped in :class:`Inline`; any other must be
    async-capable (Django's ``async_capable``), since hopping threads is what the lean
    path exists to avoid.
    """
    from django.core.exceptions import ImproperlyConfigured, MiddlewareNotUsed
    from django.core.handlers.exception import convert_exception_to_response

    handler: Any = convert_exception_to_response(innermost)
    instances: list[Any] = []
    for path in reversed(paths):
        cls = load(path)
        if path not in INLINE and not getattr(cls, "async_capable", False):
            raise ImproperlyConfigured(
                f"{path} is in FLEXIAI['LEAN_MIDDLEWARE'] but is not async-capable: the "
                "lean API handler runs async middleware only (or one of "
                f"{sorted(INLINE)}).")
        try:
            middleware: Any = Inline(cls, handler) if path in INLINE else cls(handler)
        except MiddlewareNotUsed:
            continue
        instances.insert(0, middleware)
        handler = convert_exception_to_response(middleware)
    return handler, instances
