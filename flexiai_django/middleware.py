"""Request id, worker id, a JSON log line per request, 503 for NoProviderAvailable, and
a JSON 500 (OpenAI's error shape) when an API view fails unexpectedly.

While the server drains (:mod:`flexiai_django.drain`), ASGI responses say
``Connection: close``: a load balancer's pooled keep-alive connections are gone before
the socket closes, not reused in the instant it does (WSGI servers forbid the header).

A request the client abandons before its response is ready (Django's ASGI handler
cancels the view when the client disconnects) is logged too, with status 499 (nginx's
"client closed request"), so abandoned calls show in the logs and their latency counts.

Dual-mode like django-cors-headers: the async path is the main one; under WSGI Django
calls the sync path, which does the same work without an event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest
from django.http.response import HttpResponseBase

from flexiai_django import drain
from flexiai_django.errors import NoProviderAvailable
from flexiai_django.ids import hex_id
from flexiai_django.responses import error_response, unavailable
from flexiai_django.worker import worker_id

logger = logging.getLogger("flexiai_django.requests")
errors_logger = logging.getLogger("flexiai_django")
REQUEST_ID = "X-Request-ID"
REQUEST_ID_META = "HTTP_X_REQUEST_ID"
#: The status logged for a request whose client went away first (nginx's 499).
CLIENT_CLOSED = 499


def _request_id(request: HttpRequest) -> str:
    given = request.META.get(REQUEST_ID_META, "")  # not .headers: it parses them all
    return given if 0 < len(given) <= 128 and given.isprintable() else hex_id()


class FlexiAIMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        started = self._start(request)
        response = self.get_response(request)
        return self._finish(request, response, started)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        started = self._start(request)
        get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
        try:
            response = await get_response(request)
        except asyncio.CancelledError:  # the client went away: no response will be sent
            self._log(request, CLIENT_CLOSED, None, started)
            raise
        if drain.draining():
            response["Connection"] = "close"
        return self._finish(request, response, started)

    def _start(self, request: HttpRequest) -> float:
        request.flexiai_request_id = _request_id(request)  # type: ignore[attr-defined]
        return time.perf_counter()

    def process_exception(self, request: HttpRequest,
                          exception: Exception) -> HttpResponseBase | None:
        if isinstance(exception, NoProviderAvailable):
            return unavailable(str(exception), exception.retry_after)
        match = request.resolver_match
        if match is not None and hasattr(match.func, "flexiai_scope"):
            # An API view failed unexpectedly: its callers are SDKs, so the 500 is JSON in
            # OpenAI's error shape (with no detail), and the traceback goes to the log.
            errors_logger.error("unhandled error in %s", request.path, exc_info=exception)
            return error_response(500, "The server had an error while processing your "
                                  "request.", type_="server_error", code="internal_error")
        return None

    def _finish(self, request: HttpRequest, response: HttpResponseBase,
                started: float) -> HttpResponseBase:
        response[REQUEST_ID] = request.flexiai_request_id  # type: ignore[attr-defined]
        response["X-FlexiAI-Worker"] = worker_id()
        self._log(request, response.status_code, response, started)
        return response

    def _log(self, request: HttpRequest, status: int, response: HttpResponseBase | None,
             started: float) -> None:
        record = {
            "event": "request",
            "request_id": request.flexiai_request_id,  # type: ignore[attr-defined]
            "worker_id": worker_id(),
            "method": request.method,
            "path": request.path,
            "status": status,
            "provider": (response.get("X-FlexiAI-Provider") if response else None) or None,
            "tier": (response.get("X-FlexiAI-Tier") if response else None) or None,
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
        }
        logger.info(orjson.dumps(record).decode())
