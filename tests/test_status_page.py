"""The live status page in the admin and the transition history's admin list."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import Permission
from django.test import override_settings
from django.urls import reverse

from flexiai_django import breaker, history, status_page
from flexiai_django.models import KEY_UNDECRYPTABLE, BreakerTransition, Provider
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


def test_deleting_transitions_is_not_offered_and_refused(admin_client, provider):
    breaker("llm:primary").force_open()
    history.flush()
    row = BreakerTransition.objects.get()
    changelist = reverse("admin:flexiai_django_breakertransition_changelist")
    html = admin_client.get(changelist).content.decode()
    assert "delete_selected" not in html
    admin_client.post(changelist, {"action": "delete_selected", "_selected_action": [row.pk],
                                   "post": "yes"})
    delete = reverse("admin:flexiai_django_breakertransition_delete", args=[row.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert BreakerTransition.objects.filter(pk=row.pk).exists()


# -- a provider that can't be used is shown, with why -----------------------------------

@pytest.fixture
def undecryptable():
    with override_settings(SECRET_KEY="a-secret-since-replaced"):
        p = Provider(name="broken", kind="openai", model="gpt", priority=200)
        p.set_api_key(KEY)
        p.save()
    return p


def test_the_snapshot_marks_misconfigured_providers(provider, undecryptable):
    snapshot = async_to_sync(status_page.snapshot)()
    rows = {row["name"]: row for row in snapshot["providers"]}
    assert rows["broken"]["misconfigured"] == KEY_UNDECRYPTABLE
    assert rows["primary"]["misconfigured"] is None
    assert KEY not in json.dumps(snapshot)


SCRIPT = Path(status_page.__file__).parent / "static" / "flexiai_django" / "status.js"
RENDER = Path(__file__).parent / "js" / "render_status.js"


def drawn(messages):
    """What status.js draws for these socket messages (node and a stand-in DOM): its rows
    and the per-tier line."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the status page script can't run here")
    done = subprocess.run([node, str(RENDER), str(SCRIPT)], input=json.dumps(messages),
                          capture_output=True, text=True, timeout=30, check=True)
    return json.loads(done.stdout)


def render(messages):
    """The provider rows status.js draws, by provider."""
    return {row["provider"]: row for row in drawn(messages)["rows"]}


def test_the_page_shows_a_misconfigured_provider_in_its_row(provider, undecryptable):
    snapshot = async_to_sync(status_page.snapshot)()
    rows = render([snapshot])
    assert rows["broken"]["shown"] == f"misconfigured: {KEY_UNDECRYPTABLE}"
    assert rows["broken"]["misconfigured"] == KEY_UNDECRYPTABLE
    assert rows["broken"]["name"] == "broken"
    assert (rows["primary"]["shown"], rows["primary"]["misconfigured"]) == ("", None)
    assert rows["primary"]["state"] == "closed"
    fixed = {**snapshot, "providers": [{**p, "misconfigured": None}
                                       for p in snapshot["providers"]]}
    assert render([snapshot, fixed])["broken"]["shown"] == ""


def test_a_row_shows_the_last_active_probe_and_what_probing_cost(provider):
    cfg = breaker("llm:primary").config
    store = breaker("llm:primary").store

    def shown():
        history.flush()  # the transitions' writer thread, not a reader, holds SQLite's table
        snapshot = async_to_sync(status_page.snapshot)()
        assert snapshot["active_probe_seconds"] is None  # the suite's setting: off
        return render([{**snapshot, "active_probe_seconds": 5}])["primary"]

    for _ in range(cfg.failure_threshold):
        store.record("llm:primary", cfg, success=False, probe=False, error="timeout")
    assert shown()["probe"] == "every 5 s, none yet"
    for _ in range(2):
        store.record_active_probe("llm:primary", cfg, ok=False, error="server_error")
    row = shown()
    assert row["probe"].startswith("failed at ")
    assert row["probe"].endswith("(2 probes, ≤ 2 tokens, every 5 s)")
    store.record_active_probe("llm:primary", cfg, ok=True)
    row = shown()
    assert row["state"] == "closed" and row["probe"].endswith("(3 probes, ≤ 3 tokens)")


def test_the_template_styles_misconfigured_rows(admin_client, undecryptable):
    html = admin_client.get(URL).content.decode()
    assert "#flexiai-status .misconfigured" in html and 'dataset.misconfigured' in html


def test_the_page_shows_a_provider_cooling_down(provider):
    from flexiai_django.breakers import get_store

    config = Provider.objects.get(name="primary").to_config()
    get_store().cool_down(config.breaker_name, config.breaker, 30)
    snapshot = async_to_sync(status_page.snapshot)()
    row = next(p for p in snapshot["providers"] if p["name"] == "primary")
    assert row["state"]["cooldown_until"] is not None

    assert render([snapshot])["primary"]["state"] in {
        "closed (cooling down 30 s)", "closed (cooling down 29 s)"}


# -- in flight, per provider and per tier ------------------------------------------------


def test_the_page_shows_requests_in_flight_against_capacity(provider):
    from flexiai_django import inflight

    Provider.objects.filter(name="primary").update(tier="large", capacity=2)
    inflight.get_slots().clear()
    held = inflight.get_slots().acquire("primary", 2)
    try:
        snapshot = async_to_sync(status_page.snapshot)()
        row = next(p for p in snapshot["providers"] if p["name"] == "primary")
        assert (row["in_flight"], row["capacity"], row["tier"]) == (1, 2, "large")
        assert snapshot["tiers"] == [
            {"tier": "large", "in_flight": 1, "capacity": 2, "warming": False}]
        page = drawn([snapshot])
        assert page["rows"][0]["inFlight"] == "1 / 2 (large)"
        assert page["tiers"] == "In flight per tier: large 1 / 2"
        inflight.get_slots().release(held)
        update = async_to_sync(status_page.ainflight_message)()
        assert update["in_flight"] == {"primary": 0}
        page = drawn([snapshot, update])
        assert page["rows"][0]["inFlight"] == "0 / 2 (large)"
        assert page["tiers"] == "In flight per tier: large 0 / 2"
    finally:
        inflight.get_slots().clear()
