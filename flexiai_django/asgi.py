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

Use it in place of ``django.core.asgi.get_asgi_application``::

    from flexiai_django.asgi import get_asgi_application
    application = get_asgi_application()
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from typing import Any

import django
from asgiref.sync import ThreadSensitiveContext
from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler
from django.core.handlers.asgi import ASGIRequest
from django.http.response import HttpResponseBase
from django.urls import Resolver404, get_resolver

from flexiai_django import auth
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
    try:
        match = get_resolver().resolve(path or "/")
    except Resolver404:
        return None
    required: str | None = getattr(match.func, "flexiai_scope", None)
    return required


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
            await super().handle(scope, receive, send)
            return
        limit = get_settings().MAX_BODY_BYTES
        declared = declared_length(scope)
        if declared is not None and declared > limit:
            await self._refuse(too_large(limit), send)
            return
        principal = await auth.authenticate_early(ASGIRequest(scope, BytesIO()), required)
        if isinstance(principal, auth.Refusal):
            await self._refuse(auth.refusal_response(principal), send)
            return
        if principal is not None:
            scope = {**scope, auth.SCOPE_KEY: principal}
        capped = CappedReceive(receive, limit)
        await super().handle(scope, capped, send)
        if capped.overflowed:
            await self._refuse(too_large(limit), send)

    async def _refuse(self, response: HttpResponseBase, send: Any) -> None:
        """Answer without reading the body; the server closes or drains the connection."""
        response["Connection"] = "close"
        await self.send_response(response, send)


def get_asgi_application() -> ASGIHandler:
    """Like ``django.core.asgi.get_asgi_application``, with :class:`ASGIHandler`."""
    django.setup(set_prefix=False)
    return ASGIHandler()
