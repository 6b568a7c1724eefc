"""WebSocket routes: wrap them as the demo's ``asgi.py`` does.

    URLRouter(flexiai_django.routing.websocket_urlpatterns)
inside ``flexiai_django.origins.OriginValidator(AuthMiddlewareStack(...))``.
"""

from django.urls import path

from flexiai_django.consumers import StatusConsumer

STATUS_SOCKET_PATH = "ws/flexiai/status/"

websocket_urlpatterns = [
    path(STATUS_SOCKET_PATH, StatusConsumer.as_asgi(), name="flexiai-status-socket"),
]
