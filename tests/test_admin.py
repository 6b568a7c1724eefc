"""The provider admin: write-only keys, breaker state in the list, breaker actions."""

import pytest
from django.urls import reverse

from flexiai_django import breaker
from flexiai_django.breakers.state import State
from flexiai_django.models import Provider

pytestmark = pytest.mark.django_db
KEY = "sk-admin-SECRET-777777"


@pytest.fixture
def provider():
    p = Provider(name="primary", kind="openai", model="gpt")
    p.set_api_key(KEY)
    p.save()
    return p


def form_data(**overrides):
    data = {"name": "primary", "kind": "openai", "base_url": "", "model": "gpt", "enabled": "on",
            "api_key_env": "", "api_key": "", "priority": "100", "weight": "1",
            "timeout": "30"}
    data.update(overrides)
    return data


def test_the_change_page_never_shows_the_key(admin_client, provider):
    html = admin_client.get(reverse("admin:flexiai_django_provider_change",
                                    args=[provider.pk])).content.decode()
    assert "stored (encrypted)" in html
    assert KEY not in html and provider.api_key_encrypted not in html


def test_adding_a_provider_with_a_key_stores_it_encrypted(admin_client):
    response = admin_client.post(reverse("admin:flexiai_django_provider_add"),
                                 form_data(api_key=KEY))
    assert response.status_code == 302
    stored = Provider.objects.get(name="primary")
    assert KEY not in stored.api_key_encrypted
    assert stored.resolve_api_key() == KEY


def test_saving_with_a_blank_key_keeps_the_old_one(admin_client, provider):
    url = reverse("admin:flexiai_django_provider_change", args=[provider.pk])
    assert admin_client.post(url, form_data(model="gpt-2")).status_code == 302
    provider.refresh_from_db()
    assert provider.model == "gpt-2" and provider.resolve_api_key() == KEY


def test_the_key_can_be_removed(admin_client, provider):
    url = reverse("admin:flexiai_django_provider_change", args=[provider.pk])
    admin_client.post(url, form_data(clear_api_key="on"))
    provider.refresh_from_db()
    assert provider.api_key_encrypted == ""


def test_the_list_shows_each_breaker_state(admin_client, provider):
    breaker("llm:primary").force_open()
    html = admin_client.get(reverse("admin:flexiai_django_provider_changelist")).content.decode()
    assert "FORCED OPEN" in html
    assert KEY not in html


@pytest.mark.parametrize(("action", "state"), [
    ("force_open_breakers", State.FORCED_OPEN),
    ("disable_breakers", State.DISABLED),
    ("reset_breakers", State.CLOSED),
])
def test_breaker_actions(admin_client, provider, action, state):
    breaker("llm:primary").force_open()
    response = admin_client.post(
        reverse("admin:flexiai_django_provider_changelist"),
        {"action": action, "_selected_action": [provider.pk]},
    )
    assert response.status_code == 302
    assert breaker("llm:primary").state.state is state


def test_non_staff_users_cannot_see_providers(client, django_user_model, provider):
    user = django_user_model.objects.create_user("bob", password="pw-123456")
    client.force_login(user)
    response = client.get(reverse("admin:flexiai_django_provider_changelist"))
    assert response.status_code == 302 and "/login/" in response["Location"]
