"""A bare Django project for the floor of ``bench/gateway.py``: settings, URLconf and
ASGI application in one module.

No installed apps, no middleware, no database, DEBUG off, one async view
(``GET /hello``) returning a small JSON body. Served as ``_bare_site:application``
(Django's own ``get_asgi_application()``) or ``_bare_site:pooled``
(:mod:`flexiai_django.asgi`, per-request threads reused), with
``DJANGO_SETTINGS_MODULE=_bare_site`` and ``bench/`` on ``PYTHONPATH``.
"""

from __future__ import annotations

import os

from django.http import HttpRequest, HttpResponse
from django.urls import path

SECRET_KEY = "bench-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
ROOT_URLCONF = __name__
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True


async def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b'{"status":"alive"}', content_type="application/json")


urlpatterns = [path("hello", hello)]

if os.environ.get("DJANGO_SETTINGS_MODULE") == __name__:
    from django.core.asgi import get_asgi_application

    from flexiai_django.asgi import ASGIHandler

    application = get_asgi_application()
    pooled = ASGIHandler()
