"""Django's ASGI handler without a new thread per request.

Django's ``ASGIHandler`` runs each request in its own ``ThreadSensitiveContext`` so that
a request's thread-sensitive sync code (the request signals' receivers such as
``close_old_connections``, ``response.close()``, sync middleware hooks, sync views,
``database_sync_to_async``) runs on one thread of its own. asgiref creates that thread
on the first such call and, on leaving the context, starts a second thread to join it:
two thread starts per request, each of which blocks the event loop until the new
thread has been scheduled. On a busy 2-core machine that is most of what a bare Django
async view costs (``bench/gateway.py``: the bare view served about 2.5x more requests
per second with the threads reused).

:class:`ASGIHandler` keeps the same model (each request still has a thread to itself
for its thread-sensitive calls, never shared with a concurrent request) but takes that
thread from a pool of single-thread executors and gives it back when the request ends,
as a threaded WSGI server reuses its threads. It needs asgiref 3.13's
``ThreadSensitiveContext(executor=...)``; with an older asgiref it behaves exactly as
Django's handler.

One difference from Django's handler: a task that a request starts and leaves running
(``asyncio.create_task`` without awaiting it) cannot make thread-sensitive calls once
the request is over (asgiref raises ``RuntimeError``); with Django's handler such a call
quietly gets a fresh thread that is never shut down.

It also guards the API views (those decorated with
:func:`flexiai_django.auth.require_scope`) before Django reads a request body, which
Django's handler always reads whole (spooling large ones to disk) before any view runs:
a declared ``Content-Length`` above ``MAX_BODY_BYTES`` gets a 413 unread, a body that
streams past it is cut off with a 413, and a caller with no valid credential (or an API
key lacking the view's scope) is refused from the headers alone. Session users are
authenticated by the view, after the (capped) body is read.

Every API response says what the gateway cost it, provider time excluded, in
``X-FlexiAI-Overhead-Ms`` (:mod:`flexiai_django.overhead`).

**Lean API path.** :func:`get_asgi_application` sends the paths in ``LEAN_PATHS``
(``/v1/...``, the health probes, ``/metrics``) through :class:`APIHandler`: the same
handler with only the middleware of ``LEAN_MIDDLEWARE`` (in the project's order) and no
thread hop for Django's request signals (:mod:`flexiai_django.lean_middleware`); every
other path keeps the project's full stack, in the same process. A request to a lean path
that carries a session cookie and no ``Authorization`` header is a logged-in user (the
admin, the demo page): it goes to the full stack, where the session, the user and
Django's CSRF check are, so a session caller's unsafe request is still CSRF-checked.

Use it in place of ``django.core.asgi.get_asgi_application``::

    from flexiai_django.asgi import get_asgi_application
    application = get_asgi_application()
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from typing import Any

import django
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.conf import settings as django_settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler
from django.core.handlers.asgi import ASGIRequest, get_script_prefix
from django.http import parse_cookie
from django.http.response import HttpResponseBase
from django.urls import (
    Resolver404,
    ResolverMatch,
    URLResolver,
    get_resolver,
    get_urlconf,
    set_script_prefix,
)
from django.utils.module_loading import import_string

from flexiai_django import auth, lean_middleware, overhead
from flexiai_django.conf import get_settings
from flexiai_django.responses import error_response

POOLED = "executor" in inspect.signature(ThreadSensitiveContext).parameters
Receive = Callable[[], Awaitable[dict[str, Any]]]


def too_large(limit: int) -> HttpResponseBase:
    return error_response(413, f"The body is larger than {limit} bytes.",
                          code="request_too_large")


def api_scope(scope: dict[str, Any]) -> str | None:
    """The auth scope of the API view this request goes to, or None for any other view."""
    path = scope.get("path", "")
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    match = resolved(get_resolver(), path or "/")
    required: str | None = getattr(match.func, "flexiai_scope", None) if match else None
    return required


def resolved(resolver: URLResolver, path: str) -> ResolverMatch | None:
    """``resolver.resolve(path)``, None for a 404; remembered for the API's short paths
    (the guard and the handler each resolved every request, ~4 % of a call's CPU)."""
    return _resolved(resolver, path) if len(path) <= 200 else _resolve(resolver, path)


def _resolve(resolver: URLResolver, path: str) -> ResolverMatch | None:
    try:
        return resolver.resolve(path)
    except Resolver404:
        return None


_resolved = functools.lru_cache(maxsize=512)(_resolve)


def only_header(scope: dict[str, Any], name: bytes) -> str | None:
    """The value of header ``name`` when the request carries it exactly once."""
    values = [value for key, value in scope.get("headers", ()) if key == name]
    return values[0].decode("latin-1") if len(values) == 1 else None


class CappedReceive:
    """``receive`` that stops a body at ``limit`` bytes.

    Past the limit it reports a disconnect, so Django's handler closes what it spooled
    and drops the request; :attr:`overflowed` then tells the caller to answer 413.
    """

    def __init__(self, receive: Receive, limit: int) -> None:
        self._receive = receive
        self._left = limit
        self.overflowed = False

    async def __call__(self) -> dict[str, Any]:
        message = await self._receive()
        self._left -= len(message.get("body", b""))
        if self._left < 0:
            self.overflowed = True
            return {"type": "http.disconnect"}
        return message


def declared_length(scope: dict[str, Any]) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class ASGIHandler(DjangoASGIHandler):
    """``django.core.handlers.asgi.ASGIHandler`` with per-request threads reused."""

    #: Idle executors kept for later requests; more than this are shut down when freed
    #: (a burst of concurrent requests leaves at most this many idle threads behind).
    max_idle_threads = 64

    def __init__(self) -> None:
        super().__init__()
        self._idle: list[ThreadPoolExecutor] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        overhead.start()
        if not POOLED:
            await super().__call__(scope, receive, send)
            return
        if scope["type"] != "http":
            raise ValueError(
                f"Django can only handle ASGI/HTTP connections, not {scope['type']}."
            )
        # The executor starts its thread on the first thread-sensitive call only: a
        # request that makes none costs no thread at all.
        executor = self._idle.pop() if self._idle else ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="django-request")
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            # Every call submitted in the context has finished (SyncToAsync waits for
            # its call even when cancelled), so the executor is idle: reuse it.
            if len(self._idle) < self.max_idle_threads:
                self._idle.append(executor)
            else:
                executor.shutdown(wait=False)


    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        required = api_scope(scope)
        if required is None:
            await self.serve(scope, receive, send)
            return
        limit = get_settings().MAX_BODY_BYTES
        declared = declared_length(scope)
        if declared is not None and declared > limit:
            await self._refuse(too_large(limit), send)
            return
        key = auth.bearer_key(only_header(scope, b"authorization") or "")
        principal = await (auth.authenticate_key(key, required) if key else
                           auth.authenticate_early(ASGIRequest(scope, BytesIO()), required))
        if isinstance(principal, auth.Refusal):
            await self._refuse(auth.refusal_response(principal), send)
            return
        if principal is not None:
            scope = {**scope, auth.SCOPE_KEY: principal}
        capped = CappedReceive(receive, limit)
        await self.serve({**scope, API_KEY: True}, capped, send)
        if capped.overflowed:
            await self._refuse(too_large(limit), send)

    async def serve(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Django's request handling proper, once the guard has let the request in."""
        await super().handle(scope, receive, send)

    async def _refuse(self, response: HttpResponseBase, send: Any) -> None:
        """Answer without reading the body; the server closes or drains the connection."""
        response["Connection"] = "close"
        await self.send_response(response, send)

    async def send_response(self, response: HttpResponseBase, send: Any) -> None:
        clock = overhead.current()
        request = getattr(response, "_flexiai_request", None)
        if clock is not None and (request is None or request.scope.get(API_KEY)):
            response[overhead.HEADER] = f"{clock.overhead_ms():.2f}"
        await super().send_response(response, send)

    async def run_get_response(self, request: Any) -> HttpResponseBase:
        response = await super().run_get_response(request)
        response._flexiai_request = request  # type: ignore[attr-defined]
        return response


#: Scope key set on requests to an API view (the ones that get the overhead header).
API_KEY = "flexiai.api"


class APIHandler(ASGIHandler):
    """:class:`ASGIHandler` for the API paths: lean middleware, request signals on the
    event loop when only Django's housekeeping listens (see the module docstring)."""

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        paths = lean_middleware.lean_middleware(django_settings.MIDDLEWARE,
                                                get_settings().LEAN_MIDDLEWARE)
        handler, instances = lean_middleware.chain(paths, self._get_response_async,  # type: ignore[attr-defined]
                                                   import_string)
        for middleware in instances:
            if hasattr(middleware, "process_view"):
                self._view_middleware.insert(
                    0, self.adapt_method_mode(True, middleware.process_view))
            if hasattr(middleware, "process_template_response"):
                self._template_response_middleware.append(
                    self.adapt_method_mode(True, middleware.process_template_response))
            if hasattr(middleware, "process_exception"):
                self._exception_middleware.append(
                    self.adapt_method_mode(False, middleware.process_exception))
        self.middleware = paths
        self._middleware_chain = handler

    def resolve_request(self, request: Any) -> ResolverMatch:
        """Django's, remembering the match of the API's paths (:func:`resolved`)."""
        if hasattr(request, "urlconf"):  # set by a middleware: Django's own way
            return super().resolve_request(request)
        match = resolved(get_resolver(get_urlconf()), request.path_info)
        if match is None:
            return super().resolve_request(request)
        request.resolver_match = match
        return match

    async def _signal(self, signal: Any, **kwargs: Any) -> None:
        """Send a request signal, unless only Django's housekeeping listens: that acts on
        the calling thread's database connections (none on the event loop's) and closes
        caches that keep their connections anyway (django-redis, locmem)."""
        if not lean_middleware.housekeeping_only(signal, type(self)):
            await signal.asend(sender=type(self), **kwargs)

    async def _close(self, response: Any) -> None:
        if not lean_middleware.housekeeping_only(signals.request_finished, type(self)):
            await sync_to_async(response.close)()
            return
        for closer in response._resource_closers:  # what close() does, minus the signal
            with contextlib.suppress(Exception):
                closer()
        response._resource_closers.clear()
        response.closed = True

    async def serve(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Django's ``ASGIHandler.handle`` without its thread hops (see :meth:`_signal`)."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        await self._signal(signals.request_started, scope=scope)
        request, early = self.create_request(scope, body_file)
        if request is None:
            assert early is not None
            body_file.close()
            await self.send_response(early, send)
            await self._close(early)
            return
        response_task = asyncio.create_task(self._respond(request, send))
        disconnect_task = asyncio.create_task(self.listen_for_disconnect(receive))
        await asyncio.wait([disconnect_task, response_task],
                           return_when=asyncio.FIRST_COMPLETED)
        for task in (disconnect_task, response_task):
            if not task.done():
                task.cancel()
            try:
                await task
            except (asyncio.CancelledError, RequestAborted):
                pass
            except AssertionError:
                body_file.close()
                raise
        if response_task.cancelled():
            await self._signal(signals.request_finished)
        else:
            await self._close(response_task.result())
        body_file.close()

    async def _respond(self, request: Any, send: Any) -> HttpResponseBase:
        response = await self.run_get_response(request)
        with contextlib.suppress(asyncio.CancelledError):  # the client went away meanwhile
            await self.send_response(response, send)
        return response


def wants_full_stack(scope: dict[str, Any]) -> bool:
    """A session cookie and no ``Authorization``: a logged-in user, served with the
    project's session, auth and CSRF middleware."""
    cookies = b""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            return False
        if name == b"cookie":
            cookies += value + b"; "
    return bool(cookies) and django_settings.SESSION_COOKIE_NAME in parse_cookie(
        cookies.decode("latin-1"))


def on_paths(path: str, prefixes: Sequence[str]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes)


class LeanRouter:
    """HTTP requests to ``prefixes`` through the lean handler, the rest through the full."""

    def __init__(self, full: ASGIHandler, lean: APIHandler, prefixes: Sequence[str]) -> None:
        self.full = full
        self.lean = lean
        self.prefixes = tuple(prefixes)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        lean = on_paths(path, self.prefixes) and not wants_full_stack(scope)
        await (self.lean if lean else self.full)(scope, receive, send)


def get_asgi_application(lean_paths: Sequence[str] | None = None) -> ASGIHandler | LeanRouter:
    """Like ``django.core.asgi.get_asgi_application``, with :class:`ASGIHandler`, and the
    API paths (``lean_paths``, default ``FLEXIAI["LEAN_PATHS"]``; empty: none) through
    :class:`APIHandler`."""
    django.setup(set_prefix=False)
    prefixes = get_settings().LEAN_PATHS if lean_paths is None else lean_paths
    if not prefixes:
        return ASGIHandler()
    return LeanRouter(ASGIHandler(), APIHandler(), prefixes)
