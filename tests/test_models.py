"""Provider rows: keys encrypted at rest, environment references, snapshots without secrets."""

import logging
import os

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import override_settings

from flexiai_django import provider_cache
from flexiai_django.errors import ConfigurationError
from flexiai_django.models import (
    ENV_NAME_REFUSED,
    KEY_ENDPOINT_CHANGED,
    KEY_UNDECRYPTABLE,
    Provider,
)

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
    provider = make(api_key_env="FLEXIAI_TEST_API_KEY")
    provider.save()
    monkeypatch.setenv("FLEXIAI_TEST_API_KEY", KEY)
    assert provider.resolve_api_key() == KEY and provider.has_api_key
    monkeypatch.delenv("FLEXIAI_TEST_API_KEY")
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


def test_an_undecryptable_provider_is_left_out_but_listed_and_logged_without_its_key(caplog):
    with override_settings(SECRET_KEY="old-secret"):
        broken = make(name="broken")
        broken.set_api_key(KEY)
        broken.save()
    make(name="fine").save()
    with caplog.at_level(logging.DEBUG):
        names = [p.name for p in provider_cache.get_providers()]
    assert names == ["fine"]
    assert [(m.name, m.reason) for m in provider_cache.get_misconfigured()] == [
        ("broken", KEY_UNDECRYPTABLE)]
    assert "broken" in caplog.text and KEY not in caplog.text
    assert Provider.objects.get(name="broken").misconfiguration() == KEY_UNDECRYPTABLE


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_async_registry_lists_misconfigured_providers_too():
    from asgiref.sync import sync_to_async

    await sync_to_async(make(name="fine").save)()
    await sync_to_async(make(name="env", api_key_env="DJANGO_SECRET_KEY").save)()
    snapshot = await provider_cache.aget_snapshot()
    assert [p.name for p in snapshot.providers] == ["fine"]
    assert [(m.name, m.reason) for m in await provider_cache.aget_misconfigured()] == [
        ("env", ENV_NAME_REFUSED)]


# -- a stored key only goes where it was entered for ------------------------------------

CAPTURE = "https://capture.example/v1"


@pytest.fixture
def stored():
    provider = make(name="keyed")
    provider.set_api_key(KEY)
    provider.save()
    return Provider.objects.get(pk=provider.pk)


@pytest.mark.parametrize("change", [{"base_url": CAPTURE}, {"kind": "openai_compatible"},
                                    {"kind": "anthropic", "base_url": CAPTURE}])
def test_moving_a_provider_drops_its_stored_key(stored, change):
    for field, value in change.items():
        setattr(stored, field, value)
    stored.save()
    assert stored.key_dropped
    reloaded = Provider.objects.get(pk=stored.pk)
    assert reloaded.api_key_encrypted == "" and not reloaded.has_api_key
    assert reloaded.resolve_api_key() == "" and reloaded.to_config().api_key == ""


def test_saving_only_the_moved_field_still_drops_the_key(stored):
    stored.base_url = CAPTURE
    stored.save(update_fields=["base_url"])
    reloaded = Provider.objects.get(pk=stored.pk)
    assert (reloaded.base_url, reloaded.api_key_encrypted) == (CAPTURE, "")


@pytest.mark.parametrize("order", ["key first", "url first"])
def test_a_key_entered_in_the_same_save_is_kept_for_the_new_endpoint(stored, order):
    if order == "key first":
        stored.set_api_key("sk-new-key-123456")
        stored.base_url = CAPTURE
    else:
        stored.base_url = CAPTURE
        stored.set_api_key("sk-new-key-123456")
    stored.save()
    assert not stored.key_dropped
    reloaded = Provider.objects.get(pk=stored.pk)
    assert reloaded.resolve_api_key() == "sk-new-key-123456"
    reloaded.model = "other"  # a later, unrelated save keeps it
    reloaded.save()
    assert Provider.objects.get(pk=stored.pk).resolve_api_key() == "sk-new-key-123456"


def test_a_key_entered_then_discarded_does_not_excuse_a_move(stored):
    stored.set_api_key("sk-never-saved-123456")
    stored.refresh_from_db()
    stored.base_url = CAPTURE
    stored.save()
    assert stored.key_dropped and Provider.objects.get(pk=stored.pk).api_key_encrypted == ""


def test_a_key_entered_once_does_not_excuse_a_later_move(stored):
    stored.set_api_key("sk-new-key-123456")
    stored.save()
    stored.base_url = CAPTURE
    stored.save()
    assert stored.key_dropped and Provider.objects.get(pk=stored.pk).api_key_encrypted == ""


@pytest.mark.parametrize("change", [{"model": "m2"}, {"priority": 3}, {"enabled": False},
                                    {"base_url": "/"}])
def test_other_edits_keep_the_key(stored, change):
    for field, value in change.items():
        setattr(stored, field, value)
    stored.save()
    assert not stored.key_dropped
    assert Provider.objects.get(pk=stored.pk).resolve_api_key() == KEY


def test_a_provider_moved_behind_the_models_back_never_gives_its_key_out(stored):
    Provider.objects.filter(pk=stored.pk).update(base_url=CAPTURE)
    moved = Provider.objects.get(pk=stored.pk)
    with pytest.raises(ConfigurationError) as caught:
        moved.resolve_api_key()
    assert str(caught.value) == KEY_ENDPOINT_CHANGED
    assert [p.name for p in provider_cache.get_providers()] == []
    assert [(m.name, m.reason) for m in provider_cache.get_misconfigured()] == [
        ("keyed", KEY_ENDPOINT_CHANGED)]


# -- environment variables: only API keys ----------------------------------------------

@pytest.mark.parametrize("name", ["DJANGO_SECRET_KEY", "SECRET_KEY", "DATABASE_URL",
                                  "openai_api_key", "OPENAI_API_KEY\n", "X_API_KEY_2"])
def test_clean_refuses_variables_that_are_not_api_keys(name):
    with pytest.raises(ValidationError) as caught:
        make(api_key_env=name).clean()
    message = " ".join(caught.value.message_dict["api_key_env"])
    assert "API_KEY_ENV_PATTERN" in message and "^[A-Z][A-Z0-9_]*_API_KEY$" in message


def test_clean_accepts_api_key_variables():
    make(api_key_env="OPENAI_API_KEY").clean()
    make().clean()


class RecordingEnviron(dict):
    """os.environ's stand-in that remembers which names were read."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.read = []

    def get(self, name, default=None):
        self.read.append(name)
        return super().get(name, default)

    def __getitem__(self, name):
        self.read.append(name)
        return super().__getitem__(name)


def test_a_refused_variable_saved_anyway_is_misconfigured_and_never_read(monkeypatch):
    environ = RecordingEnviron(os.environ, DJANGO_SECRET_KEY="the-django-secret")
    monkeypatch.setattr("flexiai_django.models.os.environ", environ)
    Provider.objects.create(name="sneaky", kind="openai", model="m",
                            api_key_env="DJANGO_SECRET_KEY")
    provider = Provider.objects.get()
    assert not provider.has_api_key
    with pytest.raises(ConfigurationError) as caught:
        provider.to_config()
    assert str(caught.value) == ENV_NAME_REFUSED
    assert provider_cache.get_providers() == ()
    assert [m.reason for m in provider_cache.get_misconfigured()] == [ENV_NAME_REFUSED]
    assert "DJANGO_SECRET_KEY" not in environ.read


def test_the_pattern_is_a_setting(monkeypatch):
    monkeypatch.setenv("VAULT_TOKEN_FOR_LLM", KEY)
    provider = make(api_key_env="VAULT_TOKEN_FOR_LLM")
    assert provider.misconfiguration() == ENV_NAME_REFUSED
    with override_settings(FLEXIAI={"API_KEY_ENV_PATTERN": r"VAULT_TOKEN_[A-Z_]+"}):
        provider.clean()
        assert provider.resolve_api_key() == KEY


def test_provider_overrides_reach_its_breaker_config():
    config = make(failure_threshold=2, open_seconds=5).to_config()
    assert (config.breaker.failure_threshold, config.breaker.open_seconds) == (2, 5)
    assert config.breaker.success_threshold == 1


@pytest.mark.django_db(transaction=True)
def test_keys_stored_before_the_upgrade_keep_working():
    """Migration 0004 binds each existing key to its row's current endpoint."""
    from django.db.migrations.executor import MigrationExecutor

    from flexiai_django import crypto

    before = [("flexiai_django", "0003_transitions_and_status")]
    after = [("flexiai_django", "0004_provider_api_key_endpoint")]
    try:
        executor = MigrationExecutor(connection)
        executor.migrate(before)
        state = executor.loader.project_state(before)
        old = state.apps.get_model("flexiai_django", "Provider")
        old.objects.create(name="legacy", kind="openai", model="m", priority=1, weight=1,
                           timeout=30, base_url="https://api.example.com/v1/",
                           api_key_encrypted=crypto.encrypt(KEY))
        old.objects.create(name="keyless", kind="ollama", model="m", priority=1, weight=1,
                           timeout=30)
        MigrationExecutor(connection).migrate(after)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    legacy = Provider.objects.get(name="legacy")
    assert legacy.api_key_endpoint == "openai https://api.example.com/v1"
    assert legacy.resolve_api_key() == KEY and legacy.misconfiguration() is None
    assert Provider.objects.get(name="keyless").api_key_endpoint == ""
