"""The provider admin: write-only keys, breaker state in the list, breaker actions."""

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import override_settings
from django.urls import reverse

from flexiai_django import breaker
from flexiai_django.breakers.state import State
from flexiai_django.models import ApiKey, Provider

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


# -- a stored key follows its endpoint --------------------------------------------------

CAPTURE = "https://capture.example/v1"


def change(client, provider, **overrides):
    url = reverse("admin:flexiai_django_provider_change", args=[provider.pk])
    return client.post(url, form_data(**overrides), follow=True)


@pytest.mark.parametrize("moved", [{"base_url": CAPTURE}, {"kind": "openai_compatible",
                                                           "base_url": CAPTURE}])
def test_moving_the_endpoint_without_retyping_the_key_removes_it_and_says_so(
        admin_client, provider, moved):
    response = change(admin_client, provider, **moved)
    warnings = [str(m) for m in get_messages(response.wsgi_request) if m.level_tag == "warning"]
    assert warnings == ["primary: the stored key was removed because the endpoint (kind or "
                        "base URL) changed; enter it again."]
    provider.refresh_from_db()
    assert provider.base_url == CAPTURE and provider.api_key_encrypted == ""
    assert not provider.has_api_key and provider.to_config().api_key == ""
    page = admin_client.get(reverse("admin:flexiai_django_provider_change", args=[provider.pk]))
    assert "stored (encrypted)" not in page.content.decode()


def test_moving_the_endpoint_with_the_key_typed_again_keeps_the_new_key(admin_client, provider):
    response = change(admin_client, provider, base_url=CAPTURE, api_key="sk-typed-again-999")
    assert not [m for m in get_messages(response.wsgi_request) if m.level_tag == "warning"]
    provider.refresh_from_db()
    assert provider.base_url == CAPTURE and provider.resolve_api_key() == "sk-typed-again-999"


def test_the_form_refuses_an_environment_variable_that_is_not_an_api_key(admin_client, provider):
    response = change(admin_client, provider, api_key_env="DJANGO_SECRET_KEY")
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["api_key_env"]
    assert "API_KEY_ENV_PATTERN" in errors[0] and "^[A-Z][A-Z0-9_]*_API_KEY$" in errors[0]
    provider.refresh_from_db()
    assert provider.api_key_env == ""
    assert change(admin_client, provider, api_key_env="OPENAI_API_KEY").redirect_chain


def test_the_list_shows_a_key_that_cannot_be_decrypted_in_red(admin_client):
    with override_settings(SECRET_KEY="a-secret-since-replaced"):
        broken = Provider(name="broken", kind="openai", model="gpt")
        broken.set_api_key(KEY)
        broken.save()
    html = admin_client.get(reverse("admin:flexiai_django_provider_changelist")).content.decode()
    assert 'class="flexiai-key-problem" style="color:#cf222e">cannot be decrypted' in html
    assert KEY not in html


def test_the_list_shows_a_refused_environment_variable(admin_client):
    Provider.objects.create(name="sneaky", kind="openai", model="gpt",
                            api_key_env="DJANGO_SECRET_KEY")
    html = admin_client.get(reverse("admin:flexiai_django_provider_changelist")).content.decode()
    assert "from $DJANGO_SECRET_KEY" in html and "refused" in html


# -- view permission is not change permission ---------------------------------------------

@pytest.fixture
def viewer(client, django_user_model):
    user = django_user_model.objects.create_user("viewer", password="pw-123456", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        codename__in=["view_provider", "view_apikey", "view_breakertransition"]))
    client.force_login(user)
    return client


@pytest.mark.parametrize("action", ["force_open_breakers", "disable_breakers", "reset_breakers"])
def test_view_only_staff_cannot_run_breaker_actions(viewer, provider, action):
    breaker("llm:primary").force_open()
    changelist = reverse("admin:flexiai_django_provider_changelist")
    assert viewer.get(changelist).status_code == 200
    assert action not in viewer.get(changelist).content.decode()
    viewer.post(changelist, {"action": action, "_selected_action": [provider.pk]})
    expected = State.FORCED_OPEN
    assert breaker("llm:primary").state.state is expected


def test_view_only_staff_cannot_rotate_an_api_key(viewer):
    key = ApiKey(name="ops", scopes="chat,admin")
    old_token = key.issue()
    key.save()
    changelist = reverse("admin:flexiai_django_apikey_changelist")
    assert "rotate" not in viewer.get(changelist).content.decode()
    response = viewer.post(changelist, {"action": "rotate", "_selected_action": [key.pk]})
    fresh = ApiKey.objects.get(pk=key.pk)
    assert (fresh.prefix, fresh.key_hash) == (key.prefix, key.key_hash)
    assert fresh.matches(old_token)
    assert "Copy the new key" not in response.content.decode()


def test_staff_who_may_change_keys_can_rotate_them(admin_client):
    key = ApiKey(name="ops", scopes="chat")
    old_token = key.issue()
    key.save()
    response = admin_client.post(reverse("admin:flexiai_django_apikey_changelist"),
                                 {"action": "rotate", "_selected_action": [key.pk]})
    assert "Copy the new key" in response.content.decode()
    assert not ApiKey.objects.get(pk=key.pk).matches(old_token)
