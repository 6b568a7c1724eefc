"""The demo site's session calls from the seed: /initiate_call and /chat_completions."""

import pytest

from flexiai_django.testing.keys import bearer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def client(client, api_token):
    client.defaults.update(bearer(api_token))
    return client


@pytest.fixture
def two(make_provider):
    make_provider("primary", priority=1)
    make_provider("secondary", priority=2)


def turn(client, **body):
    return client.post("/chat_completions", body, content_type="application/json")


def test_a_call_is_initiated_then_continued_on_its_provider(client, two, fake_upstream):
    started = client.post("/initiate_call", {}, content_type="application/json")
    assert started.status_code == 201
    session_id = started.json()["session_id"]
    assert started.json()["provider"] == "primary"
    first = turn(client, session_id=session_id, message="hello")
    assert first.status_code == 200
    assert first.json()["provider"] == "primary" and first["X-FlexiAI-Session"] == session_id
    fake_upstream.set_fault("primary", status=500)
    assert turn(client, session_id=session_id, message="again").json()["provider"] == (
        "secondary")
    fake_upstream.set_fault("primary")
    assert turn(client, session_id=session_id, message="still").json()["provider"] == (
        "secondary")  # moved once, and stays


def test_model_overrides_the_sessions_for_one_turn(client, two):
    session_id = client.post("/initiate_call", {}, content_type="application/json").json()[
        "session_id"]
    assert turn(client, session_id=session_id, message="hi",
                model="secondary").json()["provider"] == "secondary"
    assert turn(client, session_id=session_id, message="hi").json()["provider"] == "primary"
    assert turn(client, session_id=session_id, message="hi", model="nope").status_code == 404


def test_unknown_sessions_and_bad_bodies(client, two):
    assert turn(client, session_id="nope", message="hi").status_code == 404
    assert turn(client, message="hi").status_code == 400
    assert client.post("/initiate_call", "[", content_type="application/json").status_code == 400
    assert client.get("/initiate_call").status_code == 405
