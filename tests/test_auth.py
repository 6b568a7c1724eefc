"""API keys: hashed at rest, Bearer tokens, scopes, per-key limits, OpenAI-style 401/403/429."""

import pytest
from django.db import connection
from django.test import override_settings
from django.urls import reverse

from flexiai_django import auth
from flexiai_django.models import ApiKey

pytestmark = pytest.mark.django_db(transaction=True)
CHAT = "/v1/chat/completions"
HELLO = {"messages": [{"role": "user", "content": "hi"}]}
LOCKED = override_settings(FLEXIAI={"ALLOW_ANONYMOUS_LOOPBACK": False})


@pytest.fixture(autouse=True)
def _fresh_key_cache():
    auth.forget_keys()


@pytest.fixture
def provider(make_provider):
    return make_provider("primary")


def issue(name="client", scopes="chat", rate=0):
    key = ApiKey(name=name, scopes=scopes, rate_limit_per_minute=rate)
    token = key.issue()
    key.save()
    return key, token


def bearer(token):
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def chat(client, **headers):
    return client.post(CHAT, HELLO, content_type="application/json", **headers)


def test_only_a_hash_of_the_key_is_stored():
    key, token = issue()
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM flexiai_django_apikey")
        stored = " ".join(map(str, cursor.fetchone()))
    assert token not in stored and token.split("-", 2)[2] not in stored
    assert key.prefix in token and key.matches(token) and not key.matches(token + "x")


@LOCKED
def test_no_key_is_a_401_in_openai_shape(client, provider):
    response = chat(client)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"


@LOCKED
@pytest.mark.parametrize("header", ["Bearer nope", "Basic abc", "Bearer fxa-000000000000-x"])
def test_a_wrong_key_is_a_401(client, provider, header):
    response = chat(client, HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


@LOCKED
def test_a_valid_key_is_served(client, provider):
    _, token = issue()
    assert chat(client, **bearer(token)).status_code == 200


@LOCKED
def test_a_disabled_or_rotated_key_stops_working(client, provider):
    key, token = issue()
    key.enabled = False
    key.save()
    assert chat(client, **bearer(token)).status_code == 401
    key.enabled = True
    old = token
    token = key.issue()
    key.save()
    assert chat(client, **bearer(old)).status_code == 401
    assert chat(client, **bearer(token)).status_code == 200


@LOCKED
def test_management_needs_the_admin_scope(client, provider):
    _, chat_token = issue("chatty", "chat")
    _, admin_token = issue("ops", "chat,admin")
    url = reverse("flexiai:provider-reset", args=["primary"])
    assert client.post(url, **bearer(chat_token)).status_code == 403
    response = client.post(url, **bearer(admin_token))
    assert response.status_code == 200 and response.json()["circuit_state"] == "closed"


@LOCKED
def test_staff_sessions_may_manage(admin_client, provider):
    url = reverse("flexiai:provider-reset", args=["primary"])
    assert admin_client.post(url).status_code == 200


@LOCKED
def test_resetting_an_unknown_provider_is_a_404(admin_client):
    assert admin_client.post(reverse("flexiai:provider-reset", args=["ghost"])).status_code == 404


def test_anonymous_loopback_is_only_for_chat_and_only_when_allowed(client, provider):
    with override_settings(FLEXIAI={"ALLOW_ANONYMOUS_LOOPBACK": True}):
        assert chat(client).status_code == 200
        assert chat(client, REMOTE_ADDR="203.0.113.9").status_code == 401
        assert chat(client, HTTP_AUTHORIZATION="Bearer sk-placeholder").status_code == 200
        bad = chat(client, HTTP_AUTHORIZATION="Bearer fxa-000000000000-wrong")
        assert bad.status_code == 401
        url = reverse("flexiai:provider-reset", args=["primary"])
        assert client.post(url).status_code == 403


@LOCKED
def test_probes_need_no_key(client, provider):
    assert client.get("/health/live").status_code == 200
    assert client.get("/health").status_code == 200


@LOCKED
def test_providers_lists_state_but_never_keys(client, make_provider):
    make_provider("secret-holder", api_key="sk-provider-secret-998877")
    _, token = issue()
    response = client.get("/providers", **bearer(token))
    assert response.status_code == 200
    assert [p["name"] for p in response.json()["providers"]] == ["secret-holder"]
    assert "sk-provider-secret-998877" not in response.content.decode()


@LOCKED
def test_the_admin_shows_a_new_key_once_and_stores_only_its_hash(admin_client):
    response = admin_client.post(reverse("admin:flexiai_django_apikey_add"),
                                 {"name": "mobile", "scopes": ["chat"],
                                  "rate_limit_per_minute": "30", "enabled": "on"})
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    key = ApiKey.objects.get(name="mobile")
    token = response.context["issued"][0][1]
    assert key.matches(token)
    listing = admin_client.get(reverse("admin:flexiai_django_apikey_changelist")).content
    assert token.encode() not in listing


@LOCKED
def test_a_keys_rate_limit_is_a_429_with_retry_after(client, provider):
    _, token = issue(rate=2)
    assert [chat(client, **bearer(token)).status_code for _ in range(2)] == [200, 200]
    refused = chat(client, **bearer(token))
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused.json()["error"]["type"] == "rate_limit_error"
    _, other = issue("other", rate=2)
    assert chat(client, **bearer(other)).status_code == 200


@LOCKED
def test_no_response_or_log_line_carries_a_key(client, make_provider, caplog):
    make_provider("primary", api_key="sk-upstream-secret-5150")
    _, token = issue()
    with caplog.at_level("DEBUG"):
        bodies = [chat(client, **bearer(token)).content,
                  client.get("/providers", **bearer(token)).content,
                  client.get("/circuit-breakers", **bearer(token)).content,
                  client.get("/health").content,
                  chat(client, HTTP_AUTHORIZATION=f"Bearer {token}x").content]
    text = b" ".join(bodies).decode() + caplog.text
    assert "sk-upstream-secret-5150" not in text
    assert token not in text


# -- anonymous loopback is a laptop convenience, never a proxy's or a web page's -------------

OPEN = override_settings(FLEXIAI={"ALLOW_ANONYMOUS_LOOPBACK": True})


@OPEN
@pytest.mark.parametrize("meta", [
    {"REMOTE_ADDR": "127.0.0.6"},                                   # an Istio sidecar
    {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.9"},  # nginx on this host
    {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "127.0.0.1"},    # a spoofed hop
    {"REMOTE_ADDR": "127.0.0.1", "HTTP_FORWARDED": "for=203.0.113.9"},
    {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_REAL_IP": "203.0.113.9"},
    {"REMOTE_ADDR": "::ffff:127.0.0.1"},
    {"REMOTE_ADDR": "127.0.0.1", "HTTP_ORIGIN": "https://evil.example"},  # a page in the browser
])
def test_only_a_direct_loopback_connection_is_anonymous(client, provider, meta):
    response = chat(client, **meta)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"


@OPEN
@pytest.mark.parametrize("meta", [{"REMOTE_ADDR": "127.0.0.1"}, {"REMOTE_ADDR": "::1"},
                                  {"REMOTE_ADDR": "127.0.0.1",
                                   "HTTP_ORIGIN": "http://testserver"}])
def test_the_demo_laptop_itself_is_anonymous(client, provider, meta):
    assert chat(client, **meta).status_code == 200


def test_anonymous_callers_share_one_rate_limit(client, provider):
    with override_settings(FLEXIAI={"ALLOW_ANONYMOUS_LOOPBACK": True,
                                    "ANONYMOUS_RATE_LIMIT_PER_MINUTE": 2}):
        assert [chat(client).status_code for _ in range(3)] == [200, 200, 429]


# -- keys: the format is checked first, the cache holds real keys only, and a bounded number ---

@LOCKED
@pytest.mark.parametrize("token", ["fxa-" + "a" * 8000, "fxa-00000000000g-" + "A" * 43,
                                   "fxa-000000000000-" + "A" * 42, "fxa-000000000000-A" * 3])
def test_a_malformed_token_is_refused_without_a_lookup(client, provider, token,
                                                       django_assert_num_queries):
    with django_assert_num_queries(0):
        response = chat(client, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 401


@LOCKED
def test_unknown_keys_are_never_cached(client, provider):
    for n in range(300):
        chat(client, HTTP_AUTHORIZATION=f"Bearer fxa-{n:012x}-{'B' * 43}")
    assert len(auth._keys) == 0


def test_the_key_cache_is_bounded_and_keeps_the_recently_used():
    cache = auth.KeyCache()
    for n in range(10):
        cache.put(f"p{n}", n, size=4, now=0.0)
    cache.get("p6", ttl=5, now=1.0)
    cache.put("p10", 10, size=4, now=1.0)
    assert len(cache) == 4
    assert cache.get("p6", ttl=5, now=2.0) == 6 and cache.get("p7", ttl=5, now=2.0) is None
    assert cache.get("p6", ttl=5, now=6.0) is None  # older than the ttl


# -- logged-in users: chat with CSRF, manage with the permission ----------------------------

@pytest.fixture
def member(django_user_model):
    return django_user_model.objects.create_user("member", password="pw")


def csrf_client(user):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    browser.get("/")  # the demo page sets the csrftoken cookie
    return browser, browser.cookies["csrftoken"].value


@LOCKED
def test_a_logged_in_user_chats_with_a_csrf_token_only(provider, member):
    browser, token = csrf_client(member)
    refused = chat(browser)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
    assert chat(browser, HTTP_X_CSRFTOKEN=token).status_code == 200


def test_each_user_has_a_rate_limit(provider, member):
    with override_settings(FLEXIAI={"ALLOW_ANONYMOUS_LOOPBACK": False,
                                    "USER_RATE_LIMIT_PER_MINUTE": 2}):
        browser, token = csrf_client(member)
        codes = [chat(browser, HTTP_X_CSRFTOKEN=token).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


@LOCKED
def test_resetting_needs_the_change_permission_and_csrf(provider, django_user_model):
    from django.contrib.auth.models import Permission

    url = reverse("flexiai:provider-reset", args=["primary"])
    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_provider"))
    browser, token = csrf_client(viewer)
    assert browser.post(url, HTTP_X_CSRFTOKEN=token).status_code == 403
    operator = django_user_model.objects.create_user("operator", password="pw", is_staff=True)
    operator.user_permissions.add(Permission.objects.get(codename="change_provider"))
    browser, token = csrf_client(operator)
    assert browser.post(url).status_code == 403  # no CSRF token
    assert browser.post(url, HTTP_X_CSRFTOKEN=token).status_code == 200


# -- one caller's cached answer never reaches another ---------------------------------------

@LOCKED
def test_cached_answers_stay_with_the_caller_who_got_them(client, provider, fake_upstream):
    _, alice = issue("alice")
    _, bob = issue("bob")
    with override_settings(FLEXIAI={"ALLOW_ANONYMOUS_LOOPBACK": False,
                                    "DEGRADED_MESSAGE": None}):
        assert chat(client, **bearer(alice)).status_code == 200
        fake_upstream.set_fault("primary", status=500)
        assert chat(client, **bearer(bob)).status_code == 503
        cached = chat(client, **bearer(alice))
    assert cached.status_code == 200 and cached["X-FlexiAI-Tier"] == "cache"


@LOCKED
def test_a_shared_cache_scope_is_a_choice(client, provider, fake_upstream):
    _, alice = issue("alice")
    _, bob = issue("bob")
    with override_settings(FLEXIAI={"ALLOW_ANONYMOUS_LOOPBACK": False,
                                    "DEGRADED_MESSAGE": None, "CACHE_SCOPE": "shared"}):
        chat(client, **bearer(alice))
        fake_upstream.set_fault("primary", status=500)
        assert chat(client, **bearer(bob))["X-FlexiAI-Tier"] == "cache"


@LOCKED
def test_a_token_whose_secret_holds_dashes_is_accepted(client, provider):
    from flexiai_django.models import hash_token

    token = "fxa-0123456789ab--" + "_-" * 21  # url-safe base64 may start with "-"
    ApiKey.objects.create(name="dashes", prefix="0123456789ab", key_hash=hash_token(token))
    assert chat(client, **bearer(token)).status_code == 200
