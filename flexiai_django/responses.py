"""OpenAI-shaped JSON answers shared by the views, the auth layer and the middleware.

A leaf module: it imports nothing else from the app, so any layer may use it without
creating an import cycle.
"""

from __future__ import annotations

import math
from typing import TypeVar

import orjson
from django.http import HttpResponse
from django.http.response import HttpResponseBase

R = TypeVar("R", bound=HttpResponseBase)


def error_response(status: int, message: str, *, type_: str = "invalid_request_error",
                   code: str | None = None, param: str | None = None,
                   headers: dict[str, str] | None = None) -> HttpResponse:
    """``{"error": {...}}`` as OpenAI sends it, so SDKs raise their usual exceptions."""
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    response = HttpResponse(orjson.dumps(body), status=status, content_type="application/json")
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


def unavailable(message: str, retry_after_seconds: float,
                code: str = "no_provider_available") -> HttpResponse:
    """503 with ``Retry-After``: nothing can answer now, try again later."""
    return error_response(503, message, type_="service_unavailable", code=code,
                          headers={"Retry-After": retry_after(retry_after_seconds)})


def trace_headers(provider: str | None, tier: str, attempts: int) -> dict[str, str]:
    """Who served an answer; the middleware's request log line reads them back."""
    return {"X-FlexiAI-Provider": provider or "", "X-FlexiAI-Tier": tier,
            "X-FlexiAI-Attempts": str(attempts)}


def with_headers(response: R, headers: dict[str, str]) -> R:
    for name, value in headers.items():
        response[name] = value
    return response
