"""The project's ASGI application plus its static files, for browser tests and screenshots.

A real ASGI server (daphne, uvicorn) serves no static files, so the admin would render
unstyled unless the project serves them itself. With settings whose storage hashes file
names (the demo's with DEBUG off: WhiteNoise serves ``collectstatic``'s output, and
:class:`~flexiai_django.testing.live_site.LiveSite` runs it), the application is used as
it is; otherwise it is wrapped in Django's static files handler (finders, no
``collectstatic``, plain names); WebSocket scopes pass straight through. Not for production.

Run with ``daphne flexiai_django.testing.static_asgi:application``.
"""

from __future__ import annotations

import os

from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.contrib.staticfiles.storage import ManifestFilesMixin, staticfiles_storage
from django.utils.module_loading import import_string

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flexiai_site.settings")

_app = import_string(settings.ASGI_APPLICATION)
# Finders know only plain names: with hashed names they would answer 404 for every file.
application = (_app if isinstance(staticfiles_storage, ManifestFilesMixin)
               else ASGIStaticFilesHandler(_app))
