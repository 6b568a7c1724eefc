"""WhiteNoise's middleware, made async-capable so that it leaves the ASGI stack async.

``whitenoise.middleware.WhiteNoiseMiddleware`` is sync-only. Under ASGI, Django then runs
it and every middleware above it (``FlexiAIMiddleware`` included) in a worker thread for
every request, and calls back into the async stack below it: two thread switches per
request, and the gateway's middleware no longer runs on the event loop. This subclass
answers in both modes: a request for a static file is served by WhiteNoise (in a thread,
as it reads files), any other request goes straight to the next middleware.

Needs ``whitenoise`` (the ``server`` extra). Use it in ``MIDDLEWARE`` in place of
WhiteNoise's own class, right after ``SecurityMiddleware``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from whitenoise.middleware import WhiteNoiseMiddleware  # type: ignore[import-untyped]


class AsyncWhiteNoiseMiddleware(WhiteNoiseMiddleware):  # type: ignore[misc]
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any], **kwargs: Any) -> None:
        super().__init__(get_response, **kwargs)
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        return super().__call__(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        # Without autorefresh (DEBUG off) the lookup is a dict read: no I/O on the loop.
        static_file = (self.find_file(request.path_info) if self.autorefresh
                       else self.files.get(request.path_info))
        if static_file is None:
            get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = (
                self.get_response)
            return await get_response(request)
        response: HttpResponseBase = await sync_to_async(self.serve, thread_sensitive=False)(
            static_file, request)
        return response
