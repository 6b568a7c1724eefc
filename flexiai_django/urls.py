"""Include with ``path("", include("flexiai_django.urls"))``."""

from django.urls import path, re_path

from flexiai_django.views import (
    breakers,
    catalog,
    chat,
    health,
    metrics,
    providers,
    sessions,
    unknown,
)

app_name = "flexiai"

urlpatterns = [
    path("v1/chat/completions", chat.chat_completions, name="chat-completions"),
    path("v1/models", catalog.models, name="models"),
    path("v1/models/<path:model_id>", catalog.model, name="model"),
    path("v1/sessions", sessions.collection, name="sessions"),
    path("v1/sessions/<str:session_id>", sessions.detail, name="session"),
    path("health", health.health, name="health"),
    path("health/live", health.live, name="health-live"),
    path("health/ready", health.ready, name="health-ready"),
    path("circuit-breakers", breakers.circuit_breakers, name="circuit-breakers"),
    path("providers", providers.providers, name="providers"),
    path("providers/<slug:name>/reset", providers.reset, name="provider-reset"),
    path("metrics", metrics.export, name="metrics"),
    # Last: any other /v1/... path answers OpenAI's JSON 404, never an HTML page.
    re_path(r"^v1(?:/.*)?$", unknown.not_found, name="v1-not-found"),
]
