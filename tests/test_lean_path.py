"""flexiai_django.asgi's lean API path: one process, two middleware stacks.

The API paths skip the project's session, CSRF and message middleware and every thread
hop; what a caller relies on must not change: keys, scopes, rate limits, body limits,
security headers, and the CSRF check of a logged-in user's unsafe request (such a
request goes to the full stack). Driven over ASGI, as a server would.
"""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from flexiai_django import asgi, auth
from flexiai_django.overhead import HEADER as OVERHEAD
from flexiai_django.testing.keys import issue_api_key
from tests.test_asgi_guard import Exchange, key_header

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]
SETTINGS = {"ALLOW_ANONYMOUS_LOOPBACK": False, "CACHE_ENABLED": False}
BODY = json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()
CSRF = "a" * 32


@pytest.fixture
def app():
    with override_settings(FLEXIAI=SETTINGS):
        yield asgi.get_asgi_application()


@pytest.fixture
def token(make_provider):
    make_provider("primary")
    auth.forget_keys()
    return issue_api_key()[1]


def headers_of(exchange):
    return {k.decode().lower(): v.decode() for k, v in exchange.sent[0]["headers"]}


def body_of(exchange):
    return json.loads(b"".join(m.get("body", b"") for m in exchange.sent[1:]))


async def test_an_api_key_call_takes_the_lean_path_without_a_thread(app, token):
    await Exchange([BODY], [key_header(token)]).run(app)  # the key is now cached
    app.lean._idle.clear()
    app.full._idle.clear()
    answered = await Exchange([BODY], [key_header(token)]).run(app)
    assert answered.status == 200
    assert body_of(answered)["choices"][0]["message"]["content"].startswith("primary: ")
    assert app.full._idle == [] and not app.lean._idle[-1]._threads
    # The same call through the full stack hops threads for Django's middleware.
    full = await Exchange([BODY], [key_header(token)]).run(app.full)
    assert full.status == 200 and app.full._idle[-1]._threads



async def test_a_projects_request_signal_receiver_runs_on_the_lean_path_too(app, token):
    from django.core.signals import request_finished, request_started

    await Exchange([BODY], [key_header(token)]).run(app)  # Django's housekeeping only
    heard = []

    def on_started(sender, **kwargs):
        heard.append("started")

    def on_finished(sender, **kwargs):
        heard.append("finished")

    request_started.connect(on_started)
    request_finished.connect(on_finished)
    try:
        answered = await Exchange([BODY], [key_header(token)]).run(app)
    finally:
        request_started.disconnect(on_started)
        request_finished.disconnect(on_finished)
    assert answered.status == 200 and heard == ["started", "finished"]
    await Exchange([BODY], [key_header(token)]).run(app)
    assert heard == ["started", "finished"]  # gone with its receivers


async def test_probes_take_the_lean_path(app):
    app.lean._idle.clear()
    live = await Exchange([b""], path="/health/live", method="GET").run(app)
    assert live.status == 200 and app.lean._idle and not app.lean._idle[-1]._threads


async def test_lean_answers_keep_the_security_headers(app, token):
    answered = await Exchange([BODY], [key_header(token)]).run(app)
    headers = headers_of(answered)
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    assert headers["cross-origin-opener-policy"] == "same-origin"
    assert headers["x-frame-options"] == "DENY"
    assert "x-request-id" in headers and "x-flexiai-worker" in headers


async def test_other_paths_keep_the_full_stack(app):
    app.lean._idle.clear()
    page = await Exchange([b""], path="/admin/login/", method="GET").run(app)
    assert page.status == 200 and app.lean._idle == []
    assert "csrftoken" in headers_of(page).get("set-cookie", "")


async def test_a_bad_key_or_none_is_refused_on_the_lean_path(app, token):
    stranger = await Exchange([BODY], [(b"authorization", b"Bearer fxa-nope")]).run(app)
    nobody = await Exchange([BODY]).run(app)
    assert (stranger.status, nobody.status) == (401, 401)


async def test_a_key_lacking_the_scope_is_refused(app, make_provider):
    auth.forget_keys()
    _, chat_only = await sync_to_async(issue_api_key)(scopes="chat")
    reset = await Exchange([b""], [key_header(chat_only)], path="/providers/primary/reset"
                           ).run(app)
    assert reset.status == 403
    models = await Exchange([b""], [key_header(chat_only)], path="/v1/models",
                            method="GET").run(app)
    assert models.status == 200


async def test_rate_limits_hold_on_the_lean_path(app, make_provider):
    await sync_to_async(make_provider)("primary")
    auth.forget_keys()
    _, token = await sync_to_async(issue_api_key)(rate_limit_per_minute=1)
    first = await Exchange([BODY], [key_header(token)]).run(app)
    second = await Exchange([BODY], [key_header(token)]).run(app)
    assert (first.status, second.status) == (200, 429)
    assert body_of(second)["error"]["code"] == "rate_limit_exceeded"


async def test_body_limits_hold_on_the_lean_path(token):
    with override_settings(FLEXIAI={**SETTINGS, "MAX_BODY_BYTES": 1000}):
        app = asgi.get_asgi_application()
        declared = await Exchange([b"x" * 1200], [key_header(token),
                                                  (b"content-length", b"1200")]).run(app)
        streamed = await Exchange([b"x" * 400] * 10, [key_header(token)]).run(app)
    assert (declared.status, declared.read) == (413, 0)
    assert streamed.status == 413 and streamed.read <= 1400


def _session_cookie(staff=False):
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore

    user = User.objects.create_user("ann", password="pw-for-tests", is_staff=staff)
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    return f"sessionid={session.session_key}; csrftoken={CSRF}".encode()


async def test_a_session_users_post_is_still_csrf_checked(app, make_provider):
    await sync_to_async(make_provider)("primary")
    cookie = (b"cookie", await sync_to_async(_session_cookie)())
    app.lean._idle.clear()
    forged = await Exchange([BODY], [cookie]).run(app)
    assert forged.status == 403 and body_of(forged)["error"]["code"] == "csrf_failed"
    checked = await Exchange([BODY], [cookie, (b"x-csrftoken", CSRF.encode())]).run(app)
    assert checked.status == 200
    assert app.lean._idle == []  # both went to the full stack, where the session is


async def test_a_key_with_a_session_cookie_is_served_lean(app, token):
    cookie = (b"cookie", b"sessionid=whatever")
    keyed = await Exchange([BODY], [key_header(token), cookie]).run(app)
    assert keyed.status == 200


async def test_api_answers_say_what_the_gateway_cost(app, token, fake_upstream):
    fake_upstream.set_fault("primary", delay=0.3)
    answered = await Exchange([BODY], [key_header(token)]).run(app)
    overhead = float(headers_of(answered)[OVERHEAD.lower()])
    assert answered.status == 200
    assert 0 <= overhead < 250  # the provider's 300 ms are not the gateway's


async def test_a_stream_says_what_the_gateway_cost_up_to_its_first_byte(app, token,
                                                                         fake_upstream):
    fake_upstream.set_fault("primary", first_token_delay=0.3)
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}],
                       "stream": True}).encode()
    streamed = await asyncio.wait_for(
        Exchange([body], [key_header(token)]).run(app), timeout=10)
    assert streamed.status == 200
    assert 0 <= float(headers_of(streamed)[OVERHEAD.lower()]) < 250


async def test_pages_get_no_overhead_header(app):
    page = await Exchange([b""], path="/admin/login/", method="GET").run(app)
    assert OVERHEAD.lower() not in headers_of(page)
