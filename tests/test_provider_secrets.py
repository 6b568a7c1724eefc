"""Provider secrets can't be walked out: a real capture server sees no key after a move.

"A user who may change a provider moved base_url to a capture server and received the
stored key"; "api_key_env=DJANGO_SECRET_KEY sent Django's secret as a Bearer token".
The capture server is a scope of the fake upstream (a real loopback HTTP server) that
records every header it receives; calls go through ``flexiai_django.chat()``.
"""

import itertools

import pytest
from django.conf import settings
from django.urls import reverse

import flexiai_django
from flexiai_django import provider_cache
from flexiai_django.models import ENV_NAME_REFUSED, KEY_ENDPOINT_CHANGED, Provider

pytestmark = pytest.mark.django_db
KEY = "sk-walk-out-SECRET-31337313373"
_count = itertools.count()


def ask():
    """A new question each time, so no answer comes from the cache tier."""
    return flexiai_django.chat([{"role": "user", "content": f"question {next(_count)}"}])


def captured(fake_upstream, secret):
    """Every header the capture scope received that carries any trace of ``secret``."""
    return [(name, value) for request in fake_upstream.requests("capture")
            for name, value in request.headers.items()
            if secret.lower() in value.lower() or name.lower() == "authorization"]


@pytest.fixture
def primary(make_provider, fake_upstream):
    provider = make_provider("primary", api_key=KEY)
    assert ask().provider == "primary"
    assert fake_upstream.requests("primary")[-1].headers["authorization"] == f"Bearer {KEY}"
    return provider


def test_moved_in_the_admin_without_the_key_the_capture_server_gets_none(
        admin_client, primary, fake_upstream):
    url = reverse("admin:flexiai_django_provider_change", args=[primary.pk])
    admin_client.post(url, {
        "name": "primary", "kind": "openai", "model": "primary-model", "enabled": "on",
        "base_url": fake_upstream.base_url("capture"), "api_key_env": "", "api_key": "",
        "priority": "100", "weight": "1", "timeout": "2"})
    result = ask()
    assert result.provider == "primary" and result.content.startswith("echo: ")
    assert fake_upstream.hits("capture") == 1
    assert captured(fake_upstream, KEY) == []


def test_moved_from_the_shell_without_the_key_the_capture_server_gets_none(
        primary, fake_upstream):
    moved = Provider.objects.get(pk=primary.pk)
    moved.base_url = fake_upstream.base_url("capture")
    moved.save()
    assert ask().provider == "primary"
    assert fake_upstream.hits("capture") == 1
    assert captured(fake_upstream, KEY) == []


def test_moved_with_the_key_entered_again_the_new_endpoint_gets_the_new_key(
        primary, fake_upstream):
    moved = Provider.objects.get(pk=primary.pk)
    moved.base_url = fake_upstream.base_url("capture")
    moved.set_api_key("sk-entered-for-capture-000")
    moved.save()
    ask()
    assert fake_upstream.requests("capture")[-1].headers["authorization"] == (
        "Bearer sk-entered-for-capture-000")


def test_moved_behind_the_models_back_the_provider_is_left_out(
        primary, make_provider, fake_upstream):
    make_provider("backup", priority=500)
    Provider.objects.filter(pk=primary.pk).update(base_url=fake_upstream.base_url("capture"))
    provider_cache.invalidate()  # .update() sends no signal; other workers refresh within a second
    assert ask().provider == "backup"
    assert fake_upstream.hits("capture") == 0
    assert [(m.name, m.reason) for m in provider_cache.get_misconfigured()] == [
        ("primary", KEY_ENDPOINT_CHANGED)]


def test_djangos_secret_key_is_never_sent_even_from_a_row_saved_without_validation(
        make_provider, fake_upstream, monkeypatch):
    secret = settings.SECRET_KEY
    monkeypatch.setenv("DJANGO_SECRET_KEY", secret)
    Provider.objects.create(name="sneaky", kind="openai", model="m", priority=1,
                            api_key_env="DJANGO_SECRET_KEY", timeout=2,
                            base_url=fake_upstream.base_url("capture"))
    make_provider("backup", priority=500)
    assert ask().provider == "backup"
    assert fake_upstream.hits("capture") == 0
    assert captured(fake_upstream, secret) == []
    for scope in ("capture", "backup"):
        for request in fake_upstream.requests(scope):
            assert secret not in " ".join(request.headers.values())
    assert [(m.name, m.reason) for m in provider_cache.get_misconfigured()] == [
        ("sneaky", ENV_NAME_REFUSED)]
