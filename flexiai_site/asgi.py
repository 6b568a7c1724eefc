"""ASGI entry point (daphne, uvicorn): HTTP through Django, WebSockets through Channels.

HTTP goes through :mod:`flexiai_django.asgi`: Django's handler with its per-request
threads reused, and the API paths (``/v1/...``, the probes, ``/metrics``;
``FLEXIAI["LEAN_PATHS"]``) through a lean handler with only the middleware they need,
in the same process (see bench/README.md). Everything else (the admin, the demo pages)
keeps the full ``MIDDLEWARE``.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flexiai_site.settings")

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter

from flexiai_django.asgi import get_asgi_application

django_application = get_asgi_application()  # sets Django up before the routes import models

from flexiai_django import lifespan  # noqa: E402
from flexiai_django.daphne_drain import DrainOnSigterm  # noqa: E402
from flexiai_django.origins import OriginValidator  # noqa: E402
from flexiai_django.routing import websocket_urlpatterns  # noqa: E402

# DrainOnSigterm: daphne drains on SIGTERM (gunicorn does in deploy/gunicorn.conf.py).
application = DrainOnSigterm(ProtocolTypeRouter({
    "http": django_application,
    "websocket": OriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    "lifespan": lifespan.application,  # uvicorn: workers leave the broadcast group on exit
}))
