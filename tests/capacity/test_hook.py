"""The hook: a real webhook on loopback, and a dotted-path callable; failures are logged."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from flexiai_django.capacity import hook
from flexiai_django.capacity.planner import Decision

DECISION = Decision("large", "scale_up", 2, 4, "busy", "utilisation 0.95 > 0.8", 1_700_000_000.0,
                    0.95, 0.95, 3.0, 1_700_000_000.0, "scale_up")
received: list = []


def remember(decision):
    received.append(decision)


def explode(decision):
    raise RuntimeError("kubectl not found")


@pytest.fixture
def webhook():
    """A real HTTP server on a loopback port: records POSTs, answers with ``status``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), None)
    server.posts, server.status = [], 204

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            server.posts.append((self.path, self.headers["Content-Type"], json.loads(body)))
            self.send_response(server.status)
            self.end_headers()

        def log_message(self, *args):
            pass

    server.RequestHandlerClass = Handler
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_webhook_gets_the_decision_as_json(webhook):
    url = f"http://127.0.0.1:{webhook.server_port}/scale?token=t0k3n"
    assert hook.call(url, DECISION)
    ((path, content_type, body),) = webhook.posts
    assert path == "/scale?token=t0k3n" and content_type == "application/json"
    assert body == DECISION.to_dict()
    assert (body["tier"], body["action"], body["desired"]) == ("large", "scale_up", 4)


def test_a_failing_webhook_is_logged_with_neither_url_nor_exception_raised(webhook, caplog):
    webhook.status = 500
    url = f"http://127.0.0.1:{webhook.server_port}/scale?token=t0k3n"
    assert not hook.call(url, DECISION)
    assert "capacity hook webhook failed for large (HTTPStatusError)" in caplog.text
    assert "t0k3n" not in caplog.text


def test_an_unreachable_webhook_fails_fast(webhook, caplog):
    port = webhook.server_port
    webhook.shutdown()
    webhook.server_close()
    assert not hook.call(f"http://127.0.0.1:{port}/scale", DECISION)
    assert "ConnectError" in caplog.text


def test_a_callable_gets_the_decision_itself(caplog):
    received.clear()
    assert hook.call("tests.capacity.test_hook.remember", DECISION)
    assert received == [DECISION]
    assert not hook.call("tests.capacity.test_hook.explode", DECISION)
    assert "tests.capacity.test_hook.explode failed for large (RuntimeError)" in caplog.text


def test_no_hook_calls_nothing():
    assert not hook.call(None, DECISION)
