"""The demo project: its endpoints, its seed command and its admin login."""

import pytest
from django.core.management import call_command
from django.test import override_settings

from flexiai_django.models import Provider
from flexiai_django.testing.keys import bearer

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("_no_anonymous_access")]


@pytest.fixture
def _no_anonymous_access(settings):
    settings.FLEXIAI = {**settings.FLEXIAI, "ALLOW_ANONYMOUS_LOOPBACK": False}


@pytest.fixture
def client(client, api_token):
    """The demo's callers send a chat key, like any API client."""
    client.defaults.update(bearer(api_token))
    return client


@pytest.fixture
def two(make_provider):
    make_provider("primary", priority=1)
    make_provider("secondary", priority=2)


@pytest.mark.parametrize(("url", "field"), [("/chat/direct", "message"),
                                            ("/chat/decorator", "topic")])
def test_demo_endpoints_answer_with_where_the_answer_came_from(client, two, url, field):
    response = client.post(url, {field: "caching"}, content_type="application/json")
    assert response.status_code == 200
    body = response.json()
    assert body["provider"] == "primary" and body["model"] == "primary-model"
    assert body["tier"] == "provider" and "caching" in body["content"]
    assert ":" in body["worker_id"] and body["timestamp"]


def test_the_demo_fails_over(client, two, fake_upstream):
    fake_upstream.set_fault("primary", status=500)
    body = client.post("/chat/direct", {"message": "hi"}, content_type="application/json").json()
    assert (body["provider"], body["attempts"]) == ("secondary", 2)


def test_no_provider_is_a_503_with_retry_after(client, two, fake_upstream):
    fake_upstream.set_fault("primary", status=500)
    fake_upstream.set_fault("secondary", status=500)
    with override_settings(FLEXIAI={"DEGRADED_MESSAGE": None, "CACHE_ENABLED": False}):
        response = client.post("/chat/direct", {"message": "hi"},
                               content_type="application/json")
    assert response.status_code == 503
    assert int(response["Retry-After"]) > 0
    assert "error" in response.json()


@pytest.mark.parametrize("body", [b"not json", b"{}", b'{"message": ""}', b'{"message": 3}'])
def test_bad_input_is_a_400(client, two, body):
    response = client.post("/chat/direct", body, content_type="application/json")
    assert response.status_code == 400 and "error" in response.json()


def test_the_demo_endpoints_only_take_post(client):
    assert client.get("/chat/direct").status_code == 405


def test_the_seed_creates_fake_providers_enabled_and_real_ones_disabled(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    call_command("flexiai_seed_demo", upstream="http://127.0.0.1:9")
    call_command("flexiai_seed_demo", upstream="http://127.0.0.1:9")
    rows = {p.name: p for p in Provider.objects.all()}
    assert set(rows) == {"openai", "anthropic", "demo-primary", "demo-secondary", "demo-local"}
    assert not rows["openai"].enabled and rows["openai"].api_key_env == "OPENAI_API_KEY"
    assert rows["demo-primary"].base_url == "http://127.0.0.1:9/demo-primary/v1"
    assert rows["demo-secondary"].kind == "anthropic" and rows["demo-secondary"].enabled


def test_the_seeded_demo_answers_offline(client, fake_upstream):
    call_command("flexiai_seed_demo", upstream=fake_upstream.url)
    body = client.post("/chat/direct", {"message": "hi"}, content_type="application/json").json()
    assert body["provider"] == "demo-primary"
    fake_upstream.set_fault("demo-primary", status=500)
    body = client.post("/chat/direct", {"message": "hi"}, content_type="application/json").json()
    assert body["provider"] == "demo-secondary" and body["content"].endswith("hi")


def test_the_demo_admin_login_works(client, tmp_path, settings, capsys):
    settings.VAR_DIR = tmp_path
    call_command("demo_admin")
    password = (tmp_path / "demo-admin-password").read_text()
    assert f"admin / {password}" in capsys.readouterr().out
    assert client.login(username="admin", password=password)


@pytest.mark.parametrize("url", ["/chat/direct", "/chat/decorator"])
def test_the_demo_views_refuse_callers_without_a_credential(two, fake_upstream, url):
    from django.test import Client

    response = Client().post(url, {"message": "hi", "topic": "hi"},
                             content_type="application/json")
    assert response.status_code == 401
    assert fake_upstream.requests("primary") == []


def test_a_logged_in_user_may_use_the_demo_with_the_pages_csrf_token(two, django_user_model):
    from django.test import Client

    user = django_user_model.objects.create_user("visitor", password="pw")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    browser.get("/")
    ask = {"path": "/chat/direct", "data": {"message": "hi"}, "content_type": "application/json"}
    assert browser.post(**ask).status_code == 403
    token = browser.cookies["csrftoken"].value
    assert browser.post(**ask, HTTP_X_CSRFTOKEN=token).status_code == 200


def test_the_demo_views_count_against_the_keys_rate_limit(client, two):
    from flexiai_django.testing.keys import issue_api_key

    _, token = issue_api_key("limited", rate_limit_per_minute=2)
    calls = [client.post("/chat/direct", {"message": "hi"}, content_type="application/json",
                         **bearer(token)).status_code for _ in range(3)]
    assert calls == [200, 200, 429]


def test_the_request_log_line_says_who_answered_a_demo_call(client, two, caplog):
    import json

    with caplog.at_level("INFO", logger="flexiai_django.requests"):
        client.post("/chat/decorator", {"topic": "hi"}, content_type="application/json")
    line = json.loads(caplog.records[-1].getMessage())
    assert (line["provider"], line["tier"]) == ("primary", "provider")
