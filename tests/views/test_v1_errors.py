"""Every /v1/... path answers OpenAI-shaped JSON: unknown paths (404), wrong methods (405),
and a view that fails unexpectedly (500)."""

import pytest

from flexiai_django.testing.keys import bearer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def client(client, api_token):
    client.defaults.update(bearer(api_token))
    return client


@pytest.mark.parametrize(("method", "path", "status"), [
    ("get", "/v1/nothing", 404),
    ("post", "/v1/embeddings", 404),
    ("delete", "/v1/chat/completions/abc", 404),
    ("get", "/v1", 404),
    ("post", "/v1/chat/completions/", 404),
    ("post", "/v1/models", 405),
    ("delete", "/v1/models/gpt-x", 405),
    ("get", "/v1/chat/completions", 405),
])
def test_every_v1_path_answers_openai_shaped_json(client, method, path, status):
    response = getattr(client, method)(path)
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]


class Broken:
    """An adapter with a bug: the view fails in a way nobody planned for."""

    def __init__(self, config):
        self.config = config

    def unsupported(self, request):
        raise RuntimeError("a bug")


def test_an_unexpected_error_in_an_api_view_is_a_json_500(client, make_provider, settings,
                                                          caplog):
    settings.FLEXIAI = {**settings.FLEXIAI,
                        "ADAPTERS": {"openai": "tests.views.test_v1_errors.Broken"}}
    make_provider("primary")
    response = client.post("/v1/chat/completions",
                           '{"messages": [{"role": "user", "content": "hi"}]}',
                           content_type="application/json")
    assert response.status_code == 500
    assert response.json()["error"] == {
        "message": "The server had an error while processing your request.",
        "type": "server_error", "param": None, "code": "internal_error"}
    assert "a bug" not in response.content.decode()
    assert any(r.exc_info and "a bug" in str(r.exc_info[1]) for r in caplog.records)
