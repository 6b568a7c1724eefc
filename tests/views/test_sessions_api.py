"""/v1/sessions and X-FlexiAI-Session on /v1/chat/completions, in-process."""

import json

import pytest

from flexiai_django.session_store import MemorySessions, get_sessions
from flexiai_django.testing.clock import FakeClock
from flexiai_django.testing.keys import bearer, issue_api_key

pytestmark = pytest.mark.django_db(transaction=True)
HELLO = {"messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
def two(make_provider):
    make_provider("primary", priority=1)
    make_provider("secondary", priority=2)


def create(client, body=None, **extra):
    return client.post("/v1/sessions", json.dumps(body or {}), content_type="application/json",
                       **extra)


def chat(client, session_id=None, body=None, **extra):
    if session_id is not None:
        extra["HTTP_X_FLEXIAI_SESSION"] = session_id
    return client.post("/v1/chat/completions", json.dumps(body or HELLO),
                        content_type="application/json", **extra)


def read(response):
    """A streamed answer in full (the test client is WSGI: the view streams synchronously)."""
    return b"".join(response.streaming_content)


def test_a_session_is_pinned_to_the_first_provider_the_chain_would_pick(client, two):
    response = create(client, {"id": "conv-1"})
    assert response.status_code == 201
    body = response.json()
    assert (body["id"], body["provider"], body["model"]) == ("conv-1", "primary", "auto")
    assert body["expires_at"] > 0
    assert client.get("/v1/sessions/conv-1").json()["provider"] == "primary"
    assert create(client, {"id": "conv-1"}).status_code == 200  # already there


def test_a_new_id_is_made_when_none_is_given(client, two):
    body = create(client, {"model": "secondary"}).json()
    assert body["id"].startswith("sess_") and body["provider"] == "secondary"


def test_an_open_breaker_is_not_pinned(client, two):
    from flexiai_django.breakers import get_store
    from flexiai_django.breakers.state import State

    get_store().force("llm:primary", State.FORCED_OPEN)
    assert create(client).json()["provider"] == "secondary"


def test_requests_of_a_session_go_to_its_pin_and_say_so(client, two):
    create(client, {"id": "s", "model": "auto"})
    get_sessions().move("anonymous", "s", "primary", "secondary")  # pinned elsewhere
    response = chat(client, "s")
    assert response.status_code == 200
    assert response["X-FlexiAI-Provider"] == "secondary"
    assert response["X-FlexiAI-Session"] == "s"


def test_the_session_moves_once_when_its_pin_fails_and_stays(client, two, fake_upstream):
    create(client, {"id": "s"})
    fake_upstream.set_fault("primary", status=500)
    assert chat(client, "s")["X-FlexiAI-Provider"] == "secondary"
    assert client.get("/v1/sessions/s").json()["provider"] == "secondary"
    fake_upstream.set_fault("primary", status=None)
    for _ in range(3):
        assert chat(client, "s")["X-FlexiAI-Provider"] == "secondary"
    assert chat(client)["X-FlexiAI-Provider"] == "primary"  # no session: priority order


def test_a_streamed_request_moves_the_session_too(client, two, fake_upstream):
    create(client, {"id": "s"})
    fake_upstream.set_fault("primary", status=500)
    response = chat(client, "s", {**HELLO, "stream": True})
    assert b"[DONE]" in read(response)
    assert response["X-FlexiAI-Provider"] == "secondary"
    assert client.get("/v1/sessions/s").json()["provider"] == "secondary"


def test_sessions_belong_to_their_caller(client, two):
    _, mine = issue_api_key("mine")
    _, theirs = issue_api_key("theirs")
    assert create(client, {"id": "s"}, **bearer(mine)).status_code == 201
    assert client.get("/v1/sessions/s", **bearer(theirs)).status_code == 404
    assert chat(client, "s", **bearer(theirs)).status_code == 404
    assert client.delete("/v1/sessions/s", **bearer(theirs)).status_code == 404
    assert client.get("/v1/sessions/s", **bearer(mine)).status_code == 200
    # The other caller may use the same id for a session of its own.
    assert create(client, {"id": "s"}, **bearer(theirs)).status_code == 201


def test_delete_then_404(client, two):
    create(client, {"id": "s"})
    response = client.delete("/v1/sessions/s")
    assert response.json() == {"id": "s", "object": "session", "deleted": True}
    assert client.get("/v1/sessions/s").status_code == 404
    response = chat(client, "s")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "session_not_found"


def test_errors_are_openai_shaped(client, two):
    bad = create(client, {"id": "no/slashes"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_session_id"
    assert create(client, {"id": "x" * 65}).status_code == 400
    assert chat(client, "bad id").status_code == 400
    body = client.post("/v1/sessions", "[", content_type="application/json")
    assert body.status_code == 400 and body.json()["error"]["code"] == "invalid_json"
    assert create(client, {"model": "gpt-17"}).json()["error"]["code"] == "model_not_found"
    assert client.get("/v1/sessions").status_code == 405
    put = client.put("/v1/sessions/s")
    assert put.status_code == 405 and put["Allow"] == "GET, DELETE"
    assert client.get("/v1/sessions/unknown").json()["error"]["code"] == "session_not_found"


def test_strangers_are_refused(client, two, settings):
    settings.FLEXIAI = {**settings.FLEXIAI, "ALLOW_ANONYMOUS_LOOPBACK": False}
    assert create(client).status_code == 401
    assert client.get("/v1/sessions/s").status_code == 401


def test_the_user_field_names_the_session_when_set(client, two, fake_upstream, settings):
    settings.FLEXIAI = {**settings.FLEXIAI, "SESSION_FROM_USER_FIELD": True}
    fake_upstream.set_fault("primary", status=500)
    assert chat(client, body={**HELLO, "user": "alice"})["X-FlexiAI-Session"] == "alice"
    fake_upstream.set_fault("primary", status=None)
    assert chat(client, body={**HELLO, "user": "alice"})["X-FlexiAI-Provider"] == "secondary"
    assert client.get("/v1/sessions/alice").json()["provider"] == "secondary"
    # Not url-safe: hashed into an id.
    assert chat(client, body={**HELLO, "user": "bob@example.com"})[
        "X-FlexiAI-Session"].startswith("u_")


def test_sessions_expire_without_redis(client, two, settings, monkeypatch):
    """The in-process store (no Redis), with a clock the test moves."""
    import flexiai_django.session_store as store_module

    clock = FakeClock()
    memory = MemorySessions(clock=clock)
    monkeypatch.setattr(store_module, "get_sessions", lambda: memory)
    monkeypatch.setattr("flexiai_django.views.sessions.get_sessions", lambda: memory)
    settings.FLEXIAI = {**settings.FLEXIAI, "SESSION_TTL_SECONDS": 60}
    body = create(client, {"id": "s"}).json()
    assert body["expires_at"] == int(clock.now + 60)
    clock.advance(59)
    assert chat(client, "s").status_code == 200  # a use refreshes the TTL
    clock.advance(59)
    assert client.get("/v1/sessions/s").status_code == 200
    clock.advance(61)
    assert client.get("/v1/sessions/s").status_code == 404
