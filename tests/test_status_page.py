"""The live status page in the admin and the transition history's admin list."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from flexiai_django import breaker, history
from flexiai_django.models import BreakerTransition, Provider
from flexiai_django.routing import STATUS_SOCKET_PATH

pytestmark = pytest.mark.django_db(transaction=True)
KEY = "sk-status-SECRET-4242"
URL = "/admin/flexiai_django/status/"


@pytest.fixture
def provider():
    p = Provider(name="primary", kind="openai", model="gpt")
    p.set_api_key(KEY)
    p.save()
    return p


def test_the_page_lives_in_the_admin_under_a_stable_address():
    assert reverse("admin:flexiai_django_status") == URL


def test_staff_get_the_page_with_its_socket_and_script(admin_client, provider):
    html = admin_client.get(URL).content.decode()
    assert 'id="flexiai-connection" data-status="connecting"' in html
    assert f'data-socket-path="/{STATUS_SOCKET_PATH}"' in html
    assert "new WebSocket(" in html
    assert 'data-may-change="true"' in html
    assert KEY not in html and provider.api_key_encrypted not in html


def test_the_admin_index_links_to_the_page(admin_client):
    assert f'href="{URL}"' in admin_client.get("/admin/").content.decode()


def test_anonymous_users_are_sent_to_the_login(client):
    response = client.get(URL)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_users_who_are_not_staff_are_sent_to_the_login(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("someone", password="pw"))
    response = client.get(URL)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_staff_without_provider_permissions_are_refused(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("clerk", password="pw",
                                                             is_staff=True))
    assert client.get(URL).status_code == 403


def test_staff_who_may_only_view_get_the_page_without_actions(client, django_user_model):
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_provider"))
    client.force_login(user)
    html = client.get(URL).content.decode()
    assert 'data-may-change="false"' in html


def test_transitions_are_listed_read_only_in_the_admin(admin_client, provider):
    BreakerTransition.objects.all().delete()
    breaker("llm:primary").force_open()
    history.flush()
    changelist = reverse("admin:flexiai_django_breakertransition_changelist")
    html = admin_client.get(changelist).content.decode()
    assert "llm:primary" in html and "forced_open" in html
    row = BreakerTransition.objects.get()
    change = reverse("admin:flexiai_django_breakertransition_change", args=[row.pk])
    assert admin_client.post(change, {"to_state": "closed"}).status_code == 403
    add = reverse("admin:flexiai_django_breakertransition_add")
    assert admin_client.get(add).status_code == 403
