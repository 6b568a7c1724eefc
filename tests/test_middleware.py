"""Every response carries a request id and worker id; every request leaves one JSON log line."""

import json
import logging

import pytest
from django.test import override_settings

pytestmark = pytest.mark.django_db(transaction=True)


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(json.loads(record.getMessage()))


@pytest.fixture
def log_lines():
    handler = Lines()
    logger = logging.getLogger("flexiai_django.requests")
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)


@pytest.fixture
def one(make_provider):
    make_provider("primary")


def test_a_request_id_is_made_and_returned(client):
    response = client.get("/health/live")
    assert len(response["X-Request-ID"]) == 32
    assert response["X-FlexiAI-Worker"] == response.json()["worker_id"]


def test_a_callers_request_id_is_kept(client):
    assert client.get("/health/live", HTTP_X_REQUEST_ID="abc-123")["X-Request-ID"] == "abc-123"


def test_one_json_log_line_per_request_with_who_served_it(client, one, log_lines):
    client.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]},
                content_type="application/json")
    (line,) = log_lines
    assert line["path"] == "/v1/chat/completions" and line["status"] == 200
    assert (line["provider"], line["tier"]) == ("primary", "provider")
    assert line["latency_ms"] > 0 and line["worker_id"] and line["request_id"]


@pytest.mark.asyncio
async def test_the_async_path_does_the_same(async_client, one, log_lines):
    response = await async_client.get("/health/live")
    assert response["X-Request-ID"] and log_lines[0]["status"] == 200


@override_settings(ROOT_URLCONF="tests.urls_for_tests",
                   FLEXIAI={"DEGRADED_MESSAGE": None, "CACHE_ENABLED": False})
@pytest.mark.parametrize("path", ["/careless", "/acareless"])
def test_no_provider_escaping_a_view_becomes_a_503(client, one, fake_upstream, path):
    fake_upstream.set_fault("primary", status=500)
    response = client.get(path)
    assert response.status_code == 503
    assert int(response["Retry-After"]) >= 1
    assert response.json()["error"]["code"] == "no_provider_available"


@pytest.mark.asyncio
async def test_a_request_the_client_abandons_is_logged_as_499(one, fake_upstream, log_lines):
    """Django's ASGI handler cancels the view when the client disconnects: the request
    still leaves its log line, with nginx's 'client closed request' status."""
    import asyncio

    from flexiai_django.asgi import ASGIHandler

    fake_upstream.set_fault("primary", delay=2.0)  # the answer is slow: the client leaves
    body = json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode()
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/chat/completions",
             "raw_path": b"/v1/chat/completions", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode()),
                         (b"x-request-id", b"gone-early")],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80)}
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent = []

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.sleep(0.3)
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    await asyncio.wait_for(ASGIHandler()(scope, receive, send), timeout=10)
    assert not sent, "nothing was answered"
    (line,) = [r for r in log_lines if r["request_id"] == "gone-early"]
    assert line["status"] == 499 and line["path"] == "/v1/chat/completions"
    assert 250 < line["latency_ms"] < 2000 and line["provider"] is None
