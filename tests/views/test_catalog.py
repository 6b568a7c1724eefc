"""GET /v1/models and /v1/models/<id> in OpenAI's shapes, for chat keys."""

import pytest

from flexiai_django.testing.keys import bearer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def client(client, api_token):
    client.defaults.update(bearer(api_token))
    return client


def test_models_lists_aliases_providers_and_their_models(client, make_provider, settings):
    make_provider("primary", model="gpt-x")
    make_provider("secondary", kind="anthropic", model="claude-x")
    make_provider("off", enabled=False)
    settings.FLEXIAI = {**settings.FLEXIAI,
                        "MODEL_ALIASES": {"auto": None, "smart": ["secondary"], "gone": ["off"]}}
    response = client.get("/v1/models")
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert [(m["id"], m["owned_by"]) for m in body["data"]] == [
        ("auto", "flexiai"), ("smart", "flexiai"), ("primary", "openai"),
        ("secondary", "anthropic"), ("gpt-x", "openai"), ("claude-x", "anthropic")]
    assert all(m["object"] == "model" for m in body["data"])
    assert client.get("/v1/models/claude-x").json()["owned_by"] == "anthropic"
    missing = client.get("/v1/models/off")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


def test_models_needs_a_chat_key(client, make_provider):
    client.defaults.pop("HTTP_AUTHORIZATION")
    response = client.get("/v1/models", REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 401
    assert "error" in response.json()
