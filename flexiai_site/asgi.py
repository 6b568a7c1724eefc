"""ASGI entry point (daphne, uvicorn): HTTP through Django, WebSockets through Channels.

HTTP goes through :mod:`flexiai_django.asgi`: Django's handler with its per-request
threads reused instead of started anew for every request (see bench/README.md).
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flexiai_site.settings")

from channels.routing import ProtocolTypeRouter

from flexiai_django.asgi import get_asgi_application

application = ProtocolTypeRouter({"http": get_asgi_application()})
