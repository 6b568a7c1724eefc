"""flexiai_django.asgi: Django's handler with each request's thread reused, not restarted."""

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async
from django.http import HttpResponse
from django.test import override_settings
from django.urls import path

from flexiai_django import asgi

gates: dict[str, asyncio.Event] = {}
waiting: dict[str, int] = {}


async def thread_of_request(request):
    ident = await sync_to_async(threading.get_ident)()  # thread-sensitive
    name = request.GET.get("gate", "")
    if name in gates:
        waiting[name] = waiting.get(name, 0) + 1
        await gates[name].wait()
    return HttpResponse(str(ident))


async def hold(app, name, count):
    """``count`` requests in flight at once, each past its thread-sensitive call."""
    gates[name], waiting[name] = asyncio.Event(), 0
    tasks = [asyncio.create_task(get(app, f"gate={name}")) for _ in range(count)]
    while waiting[name] < count:  # a condition, not a timing: each needs a thread hop
        await asyncio.sleep(0.001)
    return tasks


urlpatterns = [path("ident", thread_of_request)]


async def get(app, query=""):
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": "/ident", "raw_path": b"/ident",
             "query_string": query.encode(), "root_path": "", "headers": [(b"host", b"testserver")],
             "client": ("127.0.0.1", 5000), "server": ("testserver", 80)}
    done = asyncio.Event()
    sent = []
    messages = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive():
        if messages:
            return messages.pop()
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    await app(scope, receive, send)
    assert sent[0]["status"] == 200
    return int(b"".join(m.get("body", b"") for m in sent[1:]))


pytestmark = pytest.mark.skipif(not asgi.POOLED, reason="asgiref without executor=")


@pytest.fixture
def app():
    with override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=[]):
        yield asgi.ASGIHandler()


@pytest.mark.asyncio
async def test_sequential_requests_reuse_one_thread(app):
    first = await get(app)
    assert await get(app) == first
    assert first != threading.get_ident()


@pytest.mark.asyncio
async def test_concurrent_requests_never_share_a_thread(app):
    held = await hold(app, "hold", 3)
    free = await get(app)
    gates["hold"].set()
    idents = await asyncio.gather(*held)
    assert len(set(idents)) == 3 and free not in idents


@pytest.mark.asyncio
async def test_idle_threads_beyond_the_cap_are_shut_down(app):
    app.max_idle_threads = 1
    held = await hold(app, "cap", 3)
    gates["cap"].set()
    await asyncio.gather(*held)
    assert len(app._idle) == 1


def test_get_asgi_application_returns_the_pooled_handlers():
    app = asgi.get_asgi_application()
    assert isinstance(app, asgi.LeanRouter)
    assert isinstance(app.full, asgi.ASGIHandler) and isinstance(app.lean, asgi.APIHandler)
    assert isinstance(asgi.get_asgi_application(lean_paths=[]), asgi.ASGIHandler)
