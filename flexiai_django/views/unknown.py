"""The JSON answer for every ``/v1/...`` path the gateway does not serve.

A 404 in OpenAI's error shape, never Django's HTML page, so an SDK raises its usual
``NotFoundError`` (``urls.py`` routes it last).
"""

from __future__ import annotations

from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from flexiai_django.responses import error_response


@csrf_exempt
async def not_found(request: HttpRequest) -> HttpResponseBase:
    """Every ``/v1/...`` path not served here, whatever the method."""
    return error_response(404, f"Invalid URL ({request.method} {request.path}).",
                          code="unknown_url")
