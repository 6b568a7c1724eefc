"""flexiai_django.asgi guards the API views before Django reads a body.

Django's own handler reads (and spools to disk) the whole body before any view runs; a
stranger could make every worker buffer megabytes. These tests drive the handler over
ASGI and count what it pulled from ``receive``.
"""

import asyncio

import pytest
from django.test import override_settings

from flexiai_django import asgi
from flexiai_django.testing.keys import issue_api_key

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]
LIMIT = 1000
LOCKED = {"ALLOW_ANONYMOUS_LOOPBACK": False, "MAX_BODY_BYTES": LIMIT, "CACHE_ENABLED": False}
BODY = b'{"messages": [{"role": "user", "content": "hi"}]}'


class Exchange:
    """One request over ASGI: the body as chunks, what the handler read and sent back."""

    def __init__(self, chunks, headers=(), path="/v1/chat/completions", method="POST"):
        self.chunks = list(chunks)
        self.read = 0
        self.sent = []
        self.scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": b"", "root_path": "",
            "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"),
                        *headers],
            "client": ("127.0.0.1", 5000), "server": ("testserver", 80),
        }
        self.done = asyncio.Event()

    async def receive(self):
        if self.chunks:
            chunk = self.chunks.pop(0)
            self.read += len(chunk)
            return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks)}
        await self.done.wait()
        return {"type": "http.disconnect"}

    async def send(self, message):
        self.sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            self.done.set()

    async def run(self, app):
        await app(self.scope, self.receive, self.send)
        return self

    @property
    def status(self):
        return self.sent[0]["status"]


def key_header(token):
    return (b"authorization", f"Bearer {token}".encode())


@pytest.fixture
def app():
    with override_settings(FLEXIAI=LOCKED):
        yield asgi.ASGIHandler()


@pytest.fixture
def token(make_provider):
    make_provider("primary")
    return issue_api_key()[1]


async def test_a_declared_length_above_the_cap_is_refused_unread(app, token):
    big = Exchange([b"x" * 600, b"x" * 600],
                   [key_header(token), (b"content-length", b"1200")])
    await big.run(app)
    assert (big.status, big.read) == (413, 0)


async def test_a_body_streaming_past_the_cap_is_cut_off(app, token):
    chunks = [b"x" * 400] * 50  # 20 KB, chunked: no Content-Length
    streamed = await Exchange(chunks, [key_header(token)]).run(app)
    assert streamed.status == 413
    assert streamed.read <= LIMIT + 400


@pytest.mark.parametrize("headers", [
    [],
    [(b"authorization", b"Bearer fxa-000000000000-" + b"A" * 43)],
    [(b"authorization", b"Bearer " + b"x" * 8000)],
    [(b"authorization", b"Basic YWRtaW46YWRtaW4=")],
])
async def test_a_caller_without_a_valid_credential_is_refused_before_the_body(app, headers):
    stranger = await Exchange([BODY], headers).run(app)
    assert stranger.status == 401 and stranger.read == 0


async def test_a_key_without_the_views_scope_is_refused_before_the_body(app, token):
    from asgiref.sync import sync_to_async

    chat_only = (await sync_to_async(issue_api_key)("chatty"))[1]
    refused = await Exchange([BODY], [key_header(chat_only)],
                             path="/providers/primary/reset").run(app)
    assert refused.status == 403 and refused.read == 0


async def test_a_valid_key_is_served(app, token):
    served = await Exchange([BODY], [key_header(token)]).run(app)
    assert served.status == 200 and served.read == len(BODY)


async def test_other_views_read_their_bodies_as_django_does(app):
    probe = await Exchange([b"x" * 5000], path="/health/live", method="GET").run(app)
    assert probe.status == 200 and probe.read == 5000
