"""The project's ASGI application plus its static files, for browser tests and screenshots.

A real ASGI server (daphne, uvicorn) serves no static files, so the admin would render
unstyled; ``runserver`` would serve them but is not the server we ship. This wraps
``settings.ASGI_APPLICATION`` in Django's static files handler (finders, no
``collectstatic``); WebSocket scopes pass straight through. Not for production.

Run with ``daphne flexiai_django.testing.static_asgi:application``.
"""

from __future__ import annotations

import os

from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.utils.module_loading import import_string

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flexiai_site.settings")

application = ASGIStaticFilesHandler(import_string(settings.ASGI_APPLICATION))
