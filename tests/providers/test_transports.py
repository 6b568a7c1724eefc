"""The async path behaves the same over httpx's transport and the aiohttp one.

The demo site uses ``flexiai_django.providers.transports.aiohttp_transport`` when
httpx-aiohttp is installed; failover, error kinds and streams must not depend on it.
"""

import httpx
import pytest
from django.conf import settings
from django.test import override_settings

import flexiai_django
from flexiai_django.providers import clients
from flexiai_django.providers.transports import AiohttpTransport

HELLO = [{"role": "user", "content": "hello"}]
TRANSPORTS = {"httpx": None, "aiohttp": "flexiai_django.providers.transports.aiohttp_transport"}
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


@pytest.fixture(params=sorted(TRANSPORTS))
def two(request, make_provider):
    flexiai = {"ASYNC_TRANSPORT": TRANSPORTS[request.param], "DEGRADED_MESSAGE": None,
               "CACHE_ENABLED": False}
    with override_settings(FLEXIAI=flexiai):
        make_provider("primary", priority=1, timeout=0.5)
        make_provider("secondary", priority=2)
        yield request.param


async def test_the_configured_transport_is_used(two):
    await flexiai_django.achat(HELLO)
    client = clients.async_client("primary")
    assert isinstance(client._transport, AiohttpTransport) == (two == "aiohttp")
    # Whole (non-streaming) answers skip httpx's models on the aiohttp transport.
    assert clients.direct_post(client) is (client._transport if two == "aiohttp" else None)


async def test_an_answer(two, fake_upstream):
    result = await flexiai_django.achat(HELLO)
    assert (result.provider, result.content, result.attempts) == ("primary", "primary: hello", 1)


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ({"status": 502}, "server_error"),
        ({"reset": True}, "connection_error"),
        ({"truncated": True}, "connection_error"),
        ({"malformed": True}, "malformed_reply"),
        ({"delay": 3}, "timeout"),
    ],
)
async def test_faults_have_the_same_kind(two, fake_upstream, fault, kind):
    fake_upstream.set_fault("primary", **fault)
    result = await flexiai_django.achat(HELLO)
    assert result.provider == "secondary"
    assert result.trail[0].outcome == kind


async def test_a_stream(two):
    stream = await flexiai_django.astream([{"role": "user", "content": "one two three"}])
    assert stream.provider == "primary"
    assert "".join([piece async for piece in stream]) == "primary: one two three"


async def test_a_stream_broken_after_it_started(two, fake_upstream):
    fake_upstream.set_fault("primary", stream_fail_after=1)
    stream = await flexiai_django.astream([{"role": "user", "content": "one two three"}])
    off = {**settings.FLEXIAI, "CONTINUE_STREAMS": False}
    with override_settings(FLEXIAI=off), pytest.raises(flexiai_django.StreamInterrupted):
        async for _ in stream:
            pass


async def test_a_stream_broken_after_it_started_is_continued(two, fake_upstream):
    fake_upstream.set_fault("primary", stream_fail_after=2)
    fake_upstream.set_reply_prefix("secondary", "primary: ")
    stream = await flexiai_django.astream([{"role": "user", "content": "one two three"}])
    assert "".join([piece async for piece in stream]) == "primary: one two three"
    assert stream.result.continued_from == ("primary",)


async def test_a_refused_connection_is_a_connect_error_as_with_httpx_own_transport():
    transport = AiohttpTransport()
    try:
        with pytest.raises(httpx.ConnectError):
            await httpx.AsyncClient(transport=transport).get("http://127.0.0.1:9/")
    finally:
        await transport.aclose()


@pytest.mark.parametrize("calls", ["achat", "chat"])
async def test_an_upstream_cookie_never_rides_along_with_a_later_call(two, make_provider, calls):
    """The pooled clients are shared by every caller: a cookie one reply sets must not be
    sent with anybody's next request."""
    from aiohttp import web
    from asgiref.sync import sync_to_async

    cookies_seen = []

    async def answer(request: web.Request) -> web.Response:
        cookies_seen.append(request.headers.get("Cookie"))
        reply = {"id": "c", "object": "chat.completion", "created": 0, "model": "m",
                 "choices": [{"index": 0, "finish_reason": "stop",
                              "message": {"role": "assistant", "content": "hi"}}]}
        return web.json_response(reply, headers={"Set-Cookie": "upstream_session=s3cret; Path=/"})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        await sync_to_async(make_provider)("cookies", priority=0,
                                           base_url=f"http://127.0.0.1:{port}/v1")
        for _ in range(3):
            if calls == "achat":
                result = await flexiai_django.achat(HELLO)
            else:
                result = await sync_to_async(flexiai_django.chat)(HELLO)
            assert result.provider == "cookies"
    finally:
        await runner.cleanup()
    assert cookies_seen == [None, None, None]
