"""WhiteNoise in the demo's middleware keeps the ASGI stack async (static_files.py)."""

from django.core.handlers.asgi import ASGIHandler
from django.test import override_settings

from flexiai_django.middleware import FlexiAIMiddleware

STOCK = "whitenoise.middleware.WhiteNoiseMiddleware"
OURS = "flexiai_django.static_files.AsyncWhiteNoiseMiddleware"


def gateway_middleware_is_async(monkeypatch, middleware):
    """Build Django's ASGI stack; was FlexiAIMiddleware set up on the event loop?"""
    made = []
    original = FlexiAIMiddleware.__init__

    def record(self, get_response):
        original(self, get_response)
        made.append(self)

    monkeypatch.setattr(FlexiAIMiddleware, "__init__", record)
    with override_settings(MIDDLEWARE=middleware):
        ASGIHandler()
    monkeypatch.undo()
    return made[-1].async_mode


def test_the_gateway_middleware_stays_on_the_event_loop_under_asgi(settings, monkeypatch):
    assert OURS in settings.MIDDLEWARE and STOCK not in settings.MIDDLEWARE
    assert gateway_middleware_is_async(monkeypatch, list(settings.MIDDLEWARE))
    # WhiteNoise's own class is sync-only: Django would run FlexiAIMiddleware (above it)
    # in a thread for every request.
    stock = [STOCK if m == OURS else m for m in settings.MIDDLEWARE]
    assert not gateway_middleware_is_async(monkeypatch, stock)
