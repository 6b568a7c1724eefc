"""Provider rows: keys encrypted at rest, environment references, snapshots without secrets."""

import logging

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings

from flexiai_django import registry
from flexiai_django.errors import ConfigurationError
from flexiai_django.models import Provider

pytestmark = pytest.mark.django_db
KEY = "sk-live-SECRET-4242424242"


def stored_column(provider):
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM flexiai_django_provider WHERE id = %s", [provider.pk])
        return " ".join(str(v) for v in cursor.fetchone())


def make(**fields):
    fields.setdefault("name", "p")
    fields.setdefault("kind", "openai")
    fields.setdefault("model", "m")
    return Provider(**fields)


def test_a_stored_key_is_encrypted_in_the_database():
    provider = make()
    provider.set_api_key(KEY)
    provider.save()
    assert KEY not in stored_column(provider)
    assert Provider.objects.get().resolve_api_key() == KEY


def test_an_environment_reference_is_read_at_call_time(monkeypatch):
    provider = make(api_key_env="FLEXIAI_TEST_KEY")
    provider.save()
    monkeypatch.setenv("FLEXIAI_TEST_KEY", KEY)
    assert provider.resolve_api_key() == KEY and provider.has_api_key
    monkeypatch.delenv("FLEXIAI_TEST_KEY")
    assert provider.resolve_api_key() == "" and not provider.has_api_key


def test_the_snapshot_carries_the_key_but_never_shows_it():
    provider = make()
    provider.set_api_key(KEY)
    config = provider.to_config()
    assert config.api_key == KEY
    assert KEY not in repr(config) and KEY not in str(config)


def test_keys_survive_a_secret_key_rotation_through_fallbacks():
    provider = make()
    provider.set_api_key(KEY)
    with override_settings(SECRET_KEY="brand-new-secret",
                           SECRET_KEY_FALLBACKS=[settings.SECRET_KEY]):
        assert provider.resolve_api_key() == KEY


def test_configured_encryption_keys_take_over_from_secret_key():
    with override_settings(FLEXIAI={"ENCRYPTION_KEYS": ["k2", "k1"]}):
        provider = make()
        provider.set_api_key(KEY)
        assert provider.resolve_api_key() == KEY
    with pytest.raises(ConfigurationError) as caught:
        provider.resolve_api_key()
    assert KEY not in str(caught.value)


def test_an_undecryptable_provider_is_skipped_and_logged_without_its_key(caplog):
    with override_settings(SECRET_KEY="old-secret"):
        broken = make(name="broken")
        broken.set_api_key(KEY)
        broken.save()
    make(name="fine").save()
    with caplog.at_level(logging.DEBUG):
        names = [p.name for p in registry.get_providers()]
    assert names == ["fine"]
    assert "broken" in caplog.text and KEY not in caplog.text


def test_provider_overrides_reach_its_breaker_config():
    config = make(failure_threshold=2, open_seconds=5).to_config()
    assert (config.breaker.failure_threshold, config.breaker.open_seconds) == (2, 5)
    assert config.breaker.success_threshold == 1
