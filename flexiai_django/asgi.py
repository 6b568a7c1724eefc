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

Use it in place of ``django.core.asgi.get_asgi_application``::

    from flexiai_django.asgi import get_asgi_application
    application = get_asgi_application()
"""

from __future__ import annotations

import inspect
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import django
from asgiref.sync import ThreadSensitiveContext
from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler

POOLED = "executor" in inspect.signature(ThreadSensitiveContext).parameters


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


def get_asgi_application() -> ASGIHandler:
    """Like ``django.core.asgi.get_asgi_application``, with :class:`ASGIHandler`."""
    django.setup(set_prefix=False)
    return ASGIHandler()
