"""Each adapter speaks its provider's API against the real fake upstream."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import orjson
import pytest

from flexiai_django.chat_types import ChatRequest
from flexiai_django.errors import (
    BadRequest,
    MalformedReply,
    ProviderAuthError,
    RateLimited,
    UpstreamConnectionError,
    UpstreamTimeout,
)
from flexiai_django.providers import adapter_class, get_adapter
from flexiai_django.providers.base import ProviderConfig

KEY = "sk-test-0123456789abcdef"
API = {"openai": "openai", "openai_compatible": "openai", "anthropic": "anthropic",
       "ollama": "ollama"}
REQUEST = ChatRequest.build(
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi there"}],
    temperature=0.5, max_tokens=20, top_p=0.8, stop=["END"],
)


@pytest.fixture
def config(fake_upstream):
    def make(kind, scope="up", **fields):
        fields.setdefault("timeout", 2.0)
        return ProviderConfig(name=scope, kind=kind, model=f"{kind}-model", api_key=KEY,
                              base_url=fake_upstream.base_url(scope, api=API[kind]), **fields)
    return make


@pytest.fixture
def client():
    with httpx.Client() as c:
        yield c


@pytest.mark.parametrize("kind", list(API))
def test_a_reply_is_translated_to_one_shape(kind, config, client, fake_upstream):
    fake_upstream.set_fault("up", auth_key=KEY)
    completion = get_adapter(config(kind)).complete(client, REQUEST)
    assert completion.content == "echo: hi there"
    assert completion.model == f"{kind}-model"
    assert completion.finish_reason == "stop"
    assert completion.usage.completion_tokens > 0


@pytest.mark.parametrize("kind", list(API))
def test_a_stream_yields_the_whole_answer_then_ends(kind, config, client, fake_upstream):
    fake_upstream.set_fault("up", auth_key=KEY)
    deltas = list(get_adapter(config(kind)).stream(client, REQUEST))
    assert "".join(d.content for d in deltas) == "echo: hi there"
    assert deltas[-1].final
    assert len([d for d in deltas if d.content]) > 1


@pytest.mark.parametrize("kind", list(API))
@pytest.mark.asyncio
async def test_async_calls_match_sync_ones(kind, config, fake_upstream):
    async with httpx.AsyncClient() as aclient:
        adapter = get_adapter(config(kind))
        completion = await adapter.acomplete(aclient, REQUEST)
        pieces = [d.content async for d in adapter.astream(aclient, REQUEST)]
    assert completion.content == "".join(pieces) == "echo: hi there"


def test_openai_request_body_and_bearer_key(config, client, fake_upstream):
    get_adapter(config("openai")).complete(client, REQUEST)
    sent = fake_upstream.requests("up")[-1]
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.json["messages"][0] == {"role": "system", "content": "Be brief."}
    assert (sent.json["temperature"], sent.json["max_tokens"], sent.json["top_p"],
            sent.json["stop"]) == (0.5, 20, 0.8, ["END"])


def test_anthropic_takes_the_system_prompt_apart(config, client, fake_upstream):
    get_adapter(config("anthropic")).complete(client, REQUEST)
    sent = fake_upstream.requests("up")[-1]
    assert sent.headers["x-api-key"] == KEY
    assert sent.headers["anthropic-version"]
    assert sent.json["system"] == "Be brief."
    assert [m["role"] for m in sent.json["messages"]] == ["user"]
    assert sent.json["stop_sequences"] == ["END"] and sent.json["max_tokens"] == 20


def test_anthropic_requires_max_tokens_so_a_default_is_sent(config, client, fake_upstream):
    get_adapter(config("anthropic")).complete(client, ChatRequest.build("hi"))
    assert fake_upstream.requests("up")[-1].json["max_tokens"] > 0


def test_ollama_options(config, client, fake_upstream):
    get_adapter(config("ollama")).complete(client, REQUEST)
    sent = fake_upstream.requests("up")[-1].json
    assert sent["stream"] is False
    assert sent["options"] == {"temperature": 0.5, "top_p": 0.8, "num_predict": 20,
                               "stop": ["END"]}


def test_an_openai_compatible_server_without_a_key_gets_no_auth_header(fake_upstream, client):
    config = ProviderConfig(name="up", kind="openai_compatible", model="m",
                            base_url=fake_upstream.base_url("up"))
    get_adapter(config).complete(client, REQUEST)
    assert "authorization" not in fake_upstream.requests("up")[-1].headers


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ({"status": 429, "retry_after": 12}, RateLimited),
        ({"status": 401}, ProviderAuthError),
        ({"status": 400}, BadRequest),
        ({"reset": True}, UpstreamConnectionError),
        ({"malformed": True}, MalformedReply),
        ({"delay": 3}, UpstreamTimeout),
    ],
)
@pytest.mark.parametrize("kind", ["openai", "anthropic", "ollama"])
def test_faults_map_to_the_taxonomy(kind, fault, error, config, client, fake_upstream):
    fake_upstream.set_fault("up", **fault)
    with pytest.raises(error) as caught:
        get_adapter(config(kind, timeout=0.3)).complete(client, REQUEST)
    assert caught.value.provider == "up"
    if error is RateLimited:
        assert caught.value.retry_after == 12


@pytest.mark.parametrize("kind", ["openai", "anthropic", "ollama"])
def test_a_stream_cut_before_its_end_marker_is_an_error(kind, config, client, fake_upstream):
    fake_upstream.set_fault("up", truncated=True)
    with pytest.raises(UpstreamConnectionError):
        list(get_adapter(config(kind)).stream(client, REQUEST))


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_a_stream_that_finished_but_omits_its_end_marker_is_complete(kind, config, client,
                                                                     fake_upstream):
    fake_upstream.set_fault("up", no_end_marker=True)
    deltas = list(get_adapter(config(kind)).stream(client, REQUEST))
    assert "".join(d.content for d in deltas) == "echo: hi there"
    assert deltas[-1].final and any(d.finish_reason == "stop" for d in deltas)


@pytest.mark.asyncio
async def test_an_async_stream_without_its_end_marker_is_complete_too(config, fake_upstream):
    fake_upstream.set_fault("up", no_end_marker=True)
    async with httpx.AsyncClient() as aclient:
        deltas = [d async for d in get_adapter(config("openai")).astream(aclient, REQUEST)]
    assert deltas[-1].final and "".join(d.content for d in deltas) == "echo: hi there"


def test_a_stream_that_stops_before_its_finish_reason_is_still_an_error(config, client,
                                                                        fake_upstream):
    fake_upstream.set_fault("up", no_end_marker=True)  # Ollama's last line is its finish
    with pytest.raises(UpstreamConnectionError):
        list(get_adapter(config("ollama")).stream(client, REQUEST))


def test_a_stream_with_a_malformed_event_is_an_error(config, client, fake_upstream):
    fake_upstream.set_fault("up", malformed=True)
    with pytest.raises(MalformedReply):
        list(get_adapter(config("openai")).stream(client, REQUEST))


def test_a_bad_request_message_is_passed_on_with_our_key_removed(config, client, fake_upstream):
    fake_upstream.set_fault("up", auth_key="something-else")
    with pytest.raises(ProviderAuthError) as caught:
        get_adapter(config("openai")).complete(client, REQUEST)
    assert KEY not in str(caught.value)

    adapter = get_adapter(config("openai"))
    body = f'{{"error": {{"message": "max_tokens too large for key {KEY}"}}}}'.encode()
    with pytest.raises(BadRequest) as caught:
        adapter.check_status(400, httpx.Headers(), body)
    assert "max_tokens too large" in str(caught.value)
    assert KEY not in str(caught.value)


def test_an_unknown_kind_has_no_adapter():
    with pytest.raises(LookupError):
        adapter_class("carrier-pigeon")


@pytest.mark.parametrize("kind", list(API))
def test_finished_streams_give_their_connection_back(kind, config, client, fake_upstream):
    adapter = get_adapter(config(kind))
    for _ in range(3):
        list(adapter.stream(client, REQUEST))
    adapter.complete(client, REQUEST)
    assert fake_upstream.connections == 1


@pytest.mark.asyncio
async def test_finished_async_streams_give_their_connection_back(config, fake_upstream):
    adapter = get_adapter(config("openai"))
    async with httpx.AsyncClient() as aclient:
        for _ in range(3):
            [d async for d in adapter.astream(aclient, REQUEST)]
    assert fake_upstream.connections == 1


@pytest.mark.parametrize("kind", ["openai", "anthropic", "ollama"])
def test_streams_report_token_usage(kind, config, client):
    deltas = list(get_adapter(config(kind)).stream(client, REQUEST))
    completion_tokens = sum(d.usage.completion_tokens for d in deltas if d.usage)
    assert completion_tokens > 0


def test_only_real_openai_is_asked_for_stream_usage(config, client, fake_upstream):
    for kind in ("openai", "openai_compatible"):
        list(get_adapter(config(kind, scope=kind)).stream(client, REQUEST))
    assert "stream_options" in fake_upstream.requests("openai")[-1].json
    assert "stream_options" not in fake_upstream.requests("openai_compatible")[-1].json


@pytest.mark.parametrize("kind", ["openai", "anthropic", "ollama"])
def test_a_context_length_refusal_is_told_apart_from_other_bad_requests(kind, config, client,
                                                                        fake_upstream):
    from flexiai_django.errors import ContextLengthExceeded

    fake_upstream.set_fault("up", too_long=True)
    with pytest.raises(ContextLengthExceeded) as caught:
        get_adapter(config(kind)).complete(client, REQUEST)
    assert not caught.value.trips_breaker and caught.value.fails_over
    fake_upstream.set_fault("up", status=400)
    with pytest.raises(BadRequest) as caught:
        get_adapter(config(kind)).complete(client, REQUEST)
    assert not caught.value.fails_over


def test_a_llama_cpp_context_refusal_is_recognised():
    from flexiai_django.providers.rejections import is_context_length

    assert is_context_length(b'{"error": {"code": 400, "type": "exceed_context_size_error", '
                             b'"message": "the request exceeds the available context size"}}')
    assert not is_context_length(b'{"error": {"message": "temperature must be <= 2"}}')
    assert not is_context_length(b"<html>bad gateway</html>")


class _Echoing400(BaseHTTPRequestHandler):
    """Answers every POST with HTTP 400 and the error body the test put on the server."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = self.server.error_body
        self.send_response(400)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def quoting_upstream():
    """A real loopback server whose 400 replies quote whatever the test tells it to."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echoing400)
    server.error_body = b"{}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


LONG_KEY = "sk-proj-Abcdefghijklmnopqrstuvwxyz0123456789QRSTUVWXyz"


@pytest.mark.parametrize("quoted", [
    LONG_KEY,                                    # whole
    LONG_KEY.upper(),                            # in another case
    LONG_KEY[10:30],                             # a piece of it
    "x" * (280 - len("bad key ")) + LONG_KEY,    # straddling the 300-character cut
    "sk-proj-********************" + LONG_KEY[-4:],  # OpenAI's own masked form
])
def test_an_upstream_quoting_our_key_never_passes_it_on(quoting_upstream, client, quoted):
    quoting_upstream.error_body = orjson.dumps(
        {"error": {"message": f"bad key {quoted} for max_tokens"}})
    config = ProviderConfig(name="up", kind="openai", model="m", api_key=LONG_KEY,
                            base_url=f"http://127.0.0.1:{quoting_upstream.server_port}/v1")
    with pytest.raises(BadRequest) as caught:
        get_adapter(config).complete(client, REQUEST)
    text = str(caught.value)
    assert text.startswith("up: provider rejected the request (HTTP 400): bad key ***")
    low = text.lower()
    assert not [LONG_KEY[i:i + 6] for i in range(len(LONG_KEY) - 5)
                if LONG_KEY[i:i + 6].lower() in low]
    assert LONG_KEY[-4:] not in text
