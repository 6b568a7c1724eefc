"""API keys for tests: a saved key and its token, as the admin would issue them."""

from __future__ import annotations

from typing import Any


def issue_api_key(name: str = "test-client", scopes: str = "chat",
                  rate_limit_per_minute: int = 0) -> tuple[Any, str]:
    """Save a new :class:`~flexiai_django.models.ApiKey`; returns ``(key, token)``."""
    from flexiai_django.models import ApiKey

    key = ApiKey(name=name, scopes=scopes, rate_limit_per_minute=rate_limit_per_minute)
    token = key.issue()
    key.save()
    return key, token


def bearer(token: str) -> dict[str, str]:
    """Django test client keyword arguments that send ``token`` as a Bearer key."""
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}
