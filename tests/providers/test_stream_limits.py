"""Every adapter kind holds a stream to its first-token and stall limits, sync and async,
over the real fake upstream (and a real trickling server), and skips one garbled event."""

import socket
import threading
import time
from contextlib import closing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from flexiai_django import metrics
from flexiai_django.chat_types import ChatRequest
from flexiai_django.errors import FirstTokenTimeout, StreamStalled, UpstreamTimeout
from flexiai_django.providers import get_adapter
from flexiai_django.providers.base import ProviderConfig
from flexiai_django.providers.transports import aiohttp_transport

API = {"openai": "openai", "anthropic": "anthropic", "ollama": "ollama"}
KINDS = list(API)
REQUEST = ChatRequest.build("hi there")
ANSWER = "echo: hi there"
SHORT = ChatRequest.build("hi")  # two pieces: one pause between them, one before the end


@pytest.fixture
def config(fake_upstream):
    def make(kind="openai", scope="up", **fields):
        fields.setdefault("timeout", 10.0)
        return ProviderConfig(name=scope, kind=kind, model="m",
                              base_url=fake_upstream.base_url(scope, api=API[kind]), **fields)
    return make


@pytest.fixture
def client():
    with httpx.Client() as c:
        yield c


#: Each kind once, each transport ``ASYNC_TRANSPORT`` offers at least once.
ASYNC_CASES = [("openai", "aiohttp"), ("anthropic", "httpx"), ("ollama", "httpx")]


def async_client(transport, **kwargs):
    return httpx.AsyncClient(
        transport=aiohttp_transport() if transport == "aiohttp" else None, **kwargs)


def drain(adapter, client):
    return list(adapter.stream(client, REQUEST))


async def adrain(adapter, client):
    return [d async for d in adapter.astream(client, REQUEST)]


@pytest.mark.parametrize("kind", KINDS)
def test_a_late_first_token_is_cut_at_its_limit_not_the_timeout(kind, config, client,
                                                                fake_upstream):
    fake_upstream.set_fault("up", first_token_delay=8)
    adapter = get_adapter(config(kind, first_token_timeout=0.2))
    started = time.monotonic()
    with pytest.raises(FirstTokenTimeout) as caught:
        drain(adapter, client)
    assert time.monotonic() - started < 2  # the timeout is 10 s, the delay 8 s
    assert caught.value.kind == "first_token_timeout" and caught.value.trips_breaker
    assert caught.value.provider == "up"


@pytest.mark.parametrize(("kind", "transport"), ASYNC_CASES)
@pytest.mark.asyncio
async def test_an_async_stream_has_the_same_first_token_limit(kind, transport, config,
                                                              fake_upstream):
    fake_upstream.set_fault("up", first_token_delay=8)
    adapter = get_adapter(config(kind, first_token_timeout=0.2))
    started = time.monotonic()
    async with async_client(transport) as aclient:
        with pytest.raises(FirstTokenTimeout):
            await adrain(adapter, aclient)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("kind", KINDS)
def test_a_stream_silent_after_its_first_token_is_stalled(kind, config, client, fake_upstream):
    fake_upstream.set_fault("up", stall_after=1, stall_for=8)
    adapter = get_adapter(config(kind, first_token_timeout=2, stall_timeout=0.2))
    pieces, started = [], time.monotonic()
    with pytest.raises(StreamStalled) as caught:
        for delta in adapter.stream(client, REQUEST):
            pieces.append(delta.content)
    assert time.monotonic() - started < 3
    assert "".join(pieces) == "echo: "  # one piece, then silence
    assert caught.value.kind == "stalled" and caught.value.trips_breaker


@pytest.mark.parametrize(("kind", "transport"), ASYNC_CASES)
@pytest.mark.asyncio
async def test_an_async_stream_silent_after_its_first_token_is_stalled(kind, transport, config,
                                                                      fake_upstream):
    fake_upstream.set_fault("up", stall_after=1, stall_for=8)
    adapter = get_adapter(config(kind, stall_timeout=0.2))
    started = time.monotonic()
    async with async_client(transport) as aclient:
        with pytest.raises(StreamStalled):
            await adrain(adapter, aclient)
    assert time.monotonic() - started < 3


def test_the_stall_limit_not_the_first_token_limit_governs_after_the_first_token(
        config, client, fake_upstream):
    """Pieces 0.4 s apart: longer than the first-token limit, well inside the stall limit."""
    fake_upstream.set_fault("up", chunk_delay=0.4)
    adapter = get_adapter(config(first_token_timeout=0.3, stall_timeout=3))
    deltas = list(adapter.stream(client, SHORT))
    assert "".join(d.content for d in deltas) == "echo: hi"


class _NoNetworkStream(httpx.BaseTransport):
    """httpx's own transport, minus the ``network_stream`` extension (as a custom
    ``SYNC_TRANSPORT`` might be)."""

    def __init__(self):
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request):
        response = self._inner.handle_request(request)
        response.extensions = {k: v for k, v in response.extensions.items()
                               if k != "network_stream"}
        return response

    def close(self):
        self._inner.close()


def test_a_transport_without_a_network_stream_keeps_healthy_slow_streams(config,
                                                                         fake_upstream):
    """Its body reads can't be bounded one by one: they keep the provider's timeout
    rather than the first-token limit, which would cut the stream after its first token."""
    fake_upstream.set_fault("up", chunk_delay=0.4)
    adapter = get_adapter(config(first_token_timeout=0.3, stall_timeout=3))
    with httpx.Client(transport=_NoNetworkStream()) as plain:
        deltas = list(adapter.stream(plain, SHORT))
    assert "".join(d.content for d in deltas) == "echo: hi"


@pytest.mark.asyncio
async def test_async_the_stall_limit_governs_after_the_first_token(config, fake_upstream):
    fake_upstream.set_fault("up", chunk_delay=0.4)
    adapter = get_adapter(config(first_token_timeout=0.3, stall_timeout=3))
    async with async_client("aiohttp") as aclient:
        deltas = [d async for d in adapter.astream(aclient, SHORT)]
    assert "".join(d.content for d in deltas) == "echo: hi"


def test_time_the_caller_spends_with_a_piece_is_not_a_stall(config, client):
    adapter = get_adapter(config(stall_timeout=0.1))
    pieces = []
    for delta in adapter.stream(client, REQUEST):
        pieces.append(delta.content)
        if delta.content:
            time.sleep(0.15)  # a slow consumer: the upstream has long sent the rest
    assert "".join(pieces) == ANSWER


def test_without_limits_a_slow_first_token_waits_for_the_timeout(config, client,
                                                                 fake_upstream):
    fake_upstream.set_fault("up", first_token_delay=0.5)
    adapter = get_adapter(config(first_token_timeout=None, stall_timeout=None, timeout=0.2))
    with pytest.raises(UpstreamTimeout) as caught:
        drain(adapter, client)
    assert type(caught.value) is UpstreamTimeout and caught.value.kind == "timeout"


def test_a_plain_call_has_no_first_token_limit(config, client, fake_upstream):
    """A non-streamed answer comes whole, after the model has written all of it."""
    fake_upstream.set_fault("up", first_token_delay=0.3)
    completion = get_adapter(config(first_token_timeout=0.1)).complete(client, REQUEST)
    assert completion.content == ANSWER


@pytest.mark.asyncio
async def test_an_async_plain_call_has_no_first_token_limit(config, fake_upstream):
    fake_upstream.set_fault("up", first_token_delay=0.3)
    async with httpx.AsyncClient() as aclient:
        completion = await get_adapter(config(first_token_timeout=0.1)).acomplete(aclient,
                                                                                  REQUEST)
    assert completion.content == ANSWER


def test_an_abandoned_stream_gives_its_connection_up(config, fake_upstream):
    """With one connection allowed, a leaked one would leave the next call waiting."""
    fake_upstream.set_fault("up", first_token_delay=8, times=1)
    adapter = get_adapter(config(first_token_timeout=0.2))
    limits = httpx.Limits(max_connections=1)
    with httpx.Client(limits=limits, timeout=httpx.Timeout(10, pool=1)) as one:
        with pytest.raises(FirstTokenTimeout):
            drain(adapter, one)
        assert "".join(d.content for d in drain(adapter, one)) == ANSWER
    assert fake_upstream.connections == 2  # the abandoned one was closed, not reused


@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
@pytest.mark.asyncio
async def test_an_abandoned_async_stream_gives_its_connection_up(transport, config,
                                                                 fake_upstream):
    fake_upstream.set_fault("up", stall_after=1, stall_for=8, times=1)
    adapter = get_adapter(config(stall_timeout=0.2))
    async with async_client(transport, limits=httpx.Limits(max_connections=1),
                               timeout=httpx.Timeout(10, pool=1)) as one:
        with pytest.raises(StreamStalled):
            await adrain(adapter, one)
        assert "".join(d.content for d in await adrain(adapter, one)) == ANSWER


@pytest.mark.parametrize("kind", KINDS)
def test_one_garbled_chunk_among_good_ones_is_skipped_and_counted(kind, config, client,
                                                                  fake_upstream):
    fake_upstream.set_fault("up", malformed_chunk_at=1)
    counter = metrics.MALFORMED_CHUNKS.labels("up")
    before = counter._value.get()
    deltas = drain(get_adapter(config(kind)), client)
    assert "".join(d.content for d in deltas) == ANSWER
    assert deltas[-1].final
    assert counter._value.get() == before + 1


@pytest.mark.asyncio
async def test_an_async_stream_skips_one_garbled_chunk_too(config, fake_upstream):
    fake_upstream.set_fault("up", malformed_chunk_at=2)
    async with httpx.AsyncClient() as aclient:
        deltas = await adrain(get_adapter(config("anthropic")), aclient)
    assert "".join(d.content for d in deltas) == ANSWER


# -- an upstream that trickles keep-alive bytes but never answers -----------------------------


ALIVE = b": alive\n\n"


class _Trickling(BaseHTTPRequestHandler):
    """Starts an SSE stream, then sends a comment line every 0.1 s and never a token."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        deadline = time.monotonic() + 8
        try:
            while time.monotonic() < deadline and not self.server.stopping.is_set():
                self.wfile.write(b"%x\r\n%s\r\n" % (len(ALIVE), ALIVE))
                self.wfile.flush()
                self.server.stopping.wait(0.1)
        except OSError:
            pass
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def trickling():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Trickling)
    server.daemon_threads = True
    server.stopping = threading.Event()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield ProviderConfig(name="trickle", kind="openai", model="m", timeout=10,
                         first_token_timeout=0.3,
                         base_url=f"http://127.0.0.1:{server.server_port}/v1")
    server.stopping.set()
    server.shutdown()
    server.server_close()
    thread.join()


def test_keep_alive_bytes_do_not_stand_in_for_a_first_token(trickling, client):
    started = time.monotonic()
    with pytest.raises(FirstTokenTimeout):
        drain(get_adapter(trickling), client)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
@pytest.mark.asyncio
async def test_async_keep_alive_bytes_do_not_stand_in_for_a_first_token(transport, trickling):
    started = time.monotonic()
    async with async_client(transport) as aclient:
        with pytest.raises(FirstTokenTimeout):
            await adrain(get_adapter(trickling), aclient)
    assert time.monotonic() - started < 2


@pytest.fixture
def never_answers():
    """A listener that never accepts nor replies."""
    with closing(socket.socket()) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield ProviderConfig(name="silent", kind="openai", model="m", timeout=10,
                             first_token_timeout=0.3,
                             base_url=f"http://127.0.0.1:{listener.getsockname()[1]}/v1")


def test_an_upstream_that_never_answers_is_cut_at_the_first_token_limit(never_answers,
                                                                        client):
    """The wait for the response's headers is bounded by the first-token limit too, not
    by the 10 s timeout."""
    started = time.monotonic()
    with pytest.raises(FirstTokenTimeout):
        drain(get_adapter(never_answers), client)
    assert time.monotonic() - started < 2


@pytest.mark.asyncio
async def test_async_an_upstream_that_never_answers_is_cut_at_the_limit_too(never_answers):
    started = time.monotonic()
    async with httpx.AsyncClient() as aclient:
        with pytest.raises(FirstTokenTimeout):
            await adrain(get_adapter(never_answers), aclient)
    assert time.monotonic() - started < 2


def test_a_stream_read_from_several_threads_keeps_its_limits(config, client, fake_upstream):
    """A thread pool may resume the stream's generator from another thread each time: the
    stall limit (5 s shorter than the first-token one) still cuts it."""
    from concurrent.futures import ThreadPoolExecutor

    fake_upstream.set_fault("up", stall_after=2, stall_for=8)
    stream = get_adapter(config(first_token_timeout=5, stall_timeout=0.3)).stream(client,
                                                                               REQUEST)
    pools = [ThreadPoolExecutor(1), ThreadPoolExecutor(1)]
    pieces, started = [], time.monotonic()
    try:
        with pytest.raises(StreamStalled):
            for turn in range(100):
                pieces.append(pools[turn % 2].submit(next, stream).result().content)
    finally:
        for pool in pools:
            pool.shutdown()
    assert time.monotonic() - started < 3
    assert "".join(pieces) == "echo: hi "
