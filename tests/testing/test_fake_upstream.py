"""The fake upstream behaves like the real APIs it stands in for, and misbehaves on demand."""

from __future__ import annotations

import email.utils
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from flexiai_django.testing.fake_upstream import FakeUpstream, Fault

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _fresh_upstream(upstream: FakeUpstream) -> None:
    upstream.reset()


def chat(text: str = "hello world", **extra: Any) -> dict[str, Any]:
    return {"model": "fake-model", "messages": [{"role": "user", "content": text}], **extra}


def openai_url(up: FakeUpstream, scope: str = "") -> str:
    return up.base_url(scope) + "/chat/completions"


def anthropic_url(up: FakeUpstream, scope: str = "") -> str:
    return up.base_url(scope, api="anthropic") + "/v1/messages"


def ollama_url(up: FakeUpstream, scope: str = "") -> str:
    return up.base_url(scope, api="ollama") + "/api/chat"


def sse_data(lines: list[str]) -> list[str]:
    return [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]


def openai_pieces(payloads: list[str]) -> list[str]:
    pieces = []
    for payload in payloads:
        if payload == "[DONE]":
            continue
        for choice in json.loads(payload)["choices"]:
            content = choice["delta"].get("content")
            if content:
                pieces.append(content)
    return pieces


def wait_for_hits(up: FakeUpstream, scope: str, count: int) -> None:
    """Synchronise with a request made from another thread (not a timing assertion)."""
    deadline = time.monotonic() + 5
    while up.hits(scope) < count:
        assert time.monotonic() < deadline, "request never reached the fake upstream"
        time.sleep(0.01)


# --- API shapes -----------------------------------------------------------------------------


def test_openai_reply_echoes_last_user_message_with_model_and_usage(
    upstream: FakeUpstream, client: httpx.Client
) -> None:
    body = chat("ignored")
    body["messages"] += [
        {"role": "assistant", "content": "a b"},
        {"role": "user", "content": "hello world"},
    ]

    response = client.post(openai_url(upstream), json=body)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    data = response.json()
    assert data["object"] == "chat.completion"
    assert data["id"].startswith("chatcmpl-fake-")
    assert isinstance(data["created"], int)
    assert data["model"] == "fake-model"
    assert data["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "echo: hello world"},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ]
    assert data["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


def test_openai_stream_sends_role_then_word_pieces_then_stop_and_done(
    upstream: FakeUpstream, client: httpx.Client
) -> None:
    with client.stream("POST", openai_url(upstream), json=chat(stream=True)) as response:
        assert response.headers["content-type"] == "text/event-stream"
        assert response.headers["transfer-encoding"] == "chunked"
        payloads = sse_data(list(response.iter_lines()))

    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert openai_pieces(payloads) == ["echo: ", "hello ", "world"]
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}


def test_openai_stream_adds_usage_chunk_when_asked(
    upstream: FakeUpstream, client: httpx.Client
) -> None:
    body = chat(stream=True, stream_options={"include_usage": True})
    with client.stream("POST", openai_url(upstream), json=body) as response:
        payloads = sse_data(list(response.iter_lines()))

    usage_chunk = json.loads(payloads[-2])
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 3


def test_anthropic_reply_has_message_shape(upstream: FakeUpstream, client: httpx.Client) -> None:
    body = chat("hi there", max_tokens=64, system="be brief")

    data = client.post(anthropic_url(upstream), json=body).json()

    assert data["id"].startswith("msg_fake_")
    assert data["type"] == "message"
    assert data["role"] == "assistant"
    assert data["model"] == "fake-model"
    assert data["content"] == [{"type": "text", "text": "echo: hi there"}]
    assert data["stop_reason"] == "end_turn"
    assert data["usage"] == {"input_tokens": 4, "output_tokens": 3}


def test_anthropic_stream_emits_named_events_in_order(
    upstream: FakeUpstream, client: httpx.Client
) -> None:
    body = chat("hi there", max_tokens=64, stream=True)
    with client.stream("POST", anthropic_url(upstream), json=body) as response:
        assert response.headers["content-type"] == "text/event-stream"
        lines = list(response.iter_lines())

    events = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    data = [json.loads(p) for p in sse_data(lines)]
    assert events == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert [d["type"] for d in data] == events
    texts = [d["delta"]["text"] for d in data if d["type"] == "content_block_delta"]
    assert "".join(texts) == "echo: hi there"
    assert data[2]["delta"]["type"] == "text_delta"
    assert data[6]["delta"]["stop_reason"] == "end_turn"
    assert data[6]["usage"] == {"output_tokens": 3}


def test_ollama_reply_when_stream_is_false(upstream: FakeUpstream, client: httpx.Client) -> None:
    data = client.post(ollama_url(upstream), json=chat(stream=False)).json()

    assert data["model"] == "fake-model"
    assert data["message"] == {"role": "assistant", "content": "echo: hello world"}
    assert data["done"] is True
    assert data["done_reason"] == "stop"
    assert data["eval_count"] == 3
    assert data["prompt_eval_count"] == 2
    assert data["created_at"].endswith("Z")


def test_ollama_streams_ndjson_when_stream_is_absent(
    upstream: FakeUpstream, client: httpx.Client
) -> None:
    with client.stream("POST", ollama_url(upstream), json=chat()) as response:
        assert response.headers["content-type"] == "application/x-ndjson"
        objects = [json.loads(line) for line in response.iter_lines() if line]

    assert [o["done"] for o in objects] == [False, False, False, True]
    assert "".join(o["message"]["content"] for o in objects) == "echo: hello world"
    assert objects[-1]["done_reason"] == "stop"


def test_reply_prefix_is_per_scope(upstream: FakeUpstream, client: httpx.Client) -> None:
    upstream.set_reply_prefix("primary", "primary: ")

    primary = client.post(openai_url(upstream, "primary"), json=chat("hi")).json()
    default = client.post(openai_url(upstream), json=chat("hi")).json()

    assert primary["choices"][0]["message"]["content"] == "primary: hi"
    assert default["choices"][0]["message"]["content"] == "echo: hi"


def test_base_url_per_api_and_scope(upstream: FakeUpstream) -> None:
    url = f"http://127.0.0.1:{upstream.port}"
    assert upstream.url == url
    assert upstream.base_url() == f"{url}/v1"
    assert upstream.base_url("primary") == f"{url}/primary/v1"
    assert upstream.base_url("/primary/", api="openai") == f"{url}/primary/v1"
    assert upstream.base_url(api="anthropic") == url
    assert upstream.base_url("b", api="anthropic") == f"{url}/b"
    assert upstream.base_url("c", api="ollama") == f"{url}/c"
    with pytest.raises(ValueError, match="unknown api"):
        upstream.base_url(api="gemini")


def test_unknown_path_is_404_json(upstream: FakeUpstream, client: httpx.Client) -> None:
    response = client.post(f"{upstream.url}/v1/embeddings", json={})

    assert response.status_code == 404
    assert "error" in response.json()
    assert upstream.hits() == 0


def test_non_post_on_chat_endpoint_is_405(upstream: FakeUpstream, client: httpx.Client) -> None:
    response = client.get(openai_url(upstream))

    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


def test_invalid_json_body_is_400_openai_error(
    upstream: FakeUpstream, client: httpx.Client
) -> None:
    response = client.post(
        openai_url(upstream), content=b"{nope", headers={"content-type": "application/json"}
    )

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_requests_are_recorded_with_path_headers_and_json(
    upstream: FakeUpstream, client: httpx.Client
) -> None:
    client.post(openai_url(upstream, "primary"), json=chat("one"), headers={"X-Trace": "t1"})
    client.post(openai_url(upstream, "primary"), json=chat("two"))

    first, second = upstream.requests("primary")
    assert first.path == "/primary/v1/chat/completions"
    assert first.headers["x-trace"] == "t1"
    assert first.headers["X-Trace"] == "t1"
    assert first.json["messages"][0]["content"] == "one"
    assert second.json["messages"][0]["content"] == "two"
    assert upstream.requests() == []


# --- scopes ---------------------------------------------------------------------------------


def test_fault_on_one_scope_leaves_others_healthy(
    upstream: FakeUpstream, client: httpx.Client
) -> None:
    upstream.set_fault("primary", status=500)

    assert client.post(openai_url(upstream, "primary"), json=chat()).status_code == 500
    assert client.post(openai_url(upstream, "secondary"), json=chat()).status_code == 200
    assert client.post(openai_url(upstream), json=chat()).status_code == 200


def test_hits_are_counted_per_scope_even_when_faulted(
    upstream: FakeUpstream, client: httpx.Client
) -> None:
    upstream.set_fault("primary", status=503)
    for _ in range(3):
        client.post(openai_url(upstream, "primary"), json=chat())
    client.post(anthropic_url(upstream, "secondary"), json=chat(max_tokens=8))

    assert upstream.hits("primary") == 3
    assert upstream.hits("secondary") == 1
    assert upstream.hits() == 0


# --- faults ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url_for", "expected"),
    [
        (
            openai_url,
            {
                "error": {
                    "message": "fake upstream error 500",
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
            },
        ),
        (
            anthropic_url,
            {"type": "error", "error": {"type": "api_error", "message": "fake upstream error 500"}},
        ),
        (ollama_url, {"error": "fake upstream error 500"}),
    ],
    ids=["openai", "anthropic", "ollama"],
)
def test_status_fault_replies_in_each_api_error_shape(
    upstream: FakeUpstream, client: httpx.Client, url_for: Any, expected: dict[str, Any]
) -> None:
    upstream.set_fault(status=500)

    response = client.post(url_for(upstream), json=chat(stream=True, max_tokens=8))

    assert response.status_code == 500
    assert response.json() == expected


def test_rate_limit_fault_sends_retry_after(upstream: FakeUpstream, client: httpx.Client) -> None:
    upstream.set_fault(status=429, retry_after=1.5)

    response = client.post(openai_url(upstream), json=chat())

    assert response.status_code == 429
    assert response.headers["retry-after"] == "1.5"
    assert response.json()["error"]["type"] == "rate_limit_error"


def test_rate_limit_fault_can_send_retry_after_as_an_http_date(
    upstream: FakeUpstream, client: httpx.Client
) -> None:
    upstream.set_fault(status=429, retry_after=30, retry_after_date=True)

    response = client.post(openai_url(upstream), json=chat())

    when = email.utils.parsedate_to_datetime(response.headers["retry-after"]).timestamp()
    assert 28 <= when - time.time() <= 30


def test_times_limits_fault_then_scope_recovers(
    upstream: FakeUpstream, client: httpx.Client
) -> None:
    upstream.set_fault("primary", status=502, times=2)

    statuses = [
        client.post(openai_url(upstream, "primary"), json=chat()).status_code for _ in range(4)
    ]

    assert statuses == [502, 502, 200, 200]


def test_delay_makes_client_read_time_out(upstream: FakeUpstream) -> None:
    upstream.set_fault(delay=2)

    with pytest.raises(httpx.ReadTimeout):
        httpx.post(openai_url(upstream), json=chat(), timeout=0.2)
    assert upstream.hits() == 1


@pytest.mark.parametrize("fault", [{"delay": 2}, {"first_token_delay": 2}])
def test_a_client_hanging_up_during_a_pause_is_counted(upstream: FakeUpstream,
                                                       fault: dict[str, Any]) -> None:
    upstream.set_fault(**fault)
    assert upstream.hangups == 0
    with pytest.raises(httpx.ReadTimeout):  # the client gives up and closes its connection
        httpx.post(openai_url(upstream), json=chat(stream=True), timeout=0.2)
    deadline = time.monotonic() + 3
    while upstream.hangups == 0:
        assert time.monotonic() < deadline, "the hang-up was not noticed within 3 s"
        time.sleep(0.02)
    assert upstream.hangups == 1
    assert upstream.stats()["hangups"] == 1


def test_reset_aborts_connection_without_response(
    upstream: FakeUpstream, client: httpx.Client
) -> None:
    upstream.set_fault(reset=True)

    with pytest.raises(httpx.TransportError):
        client.post(openai_url(upstream), json=chat())


def test_reset_is_a_tcp_rst_on_a_raw_socket(upstream: FakeUpstream) -> None:
    upstream.set_fault(reset=True)
    body = json.dumps(chat()).encode()
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body

    with socket.create_connection(("127.0.0.1", upstream.port), timeout=5) as sock:
        sock.sendall(request)
        with pytest.raises(ConnectionResetError):
            sock.recv(1024)


def test_malformed_reply_is_not_json(upstream: FakeUpstream, client: httpx.Client) -> None:
    upstream.set_fault(malformed=True)

    response = client.post(openai_url(upstream), json=chat())

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_malformed_stream_event_data_is_not_json(
    upstream: FakeUpstream, client: httpx.Client
) -> None:
    upstream.set_fault(malformed=True)

    with client.stream("POST", openai_url(upstream), json=chat(stream=True)) as response:
        payloads = sse_data(list(response.iter_lines()))

    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(payloads[0])


def test_truncated_reply_fails_while_reading_body(
    upstream: FakeUpstream, client: httpx.Client
) -> None:
    upstream.set_fault(truncated=True)

    with pytest.raises(httpx.RemoteProtocolError):
        client.post(openai_url(upstream), json=chat())


def test_truncated_stream_ends_without_done(upstream: FakeUpstream, client: httpx.Client) -> None:
    upstream.set_fault(truncated=True)
    lines: list[str] = []

    with (
        pytest.raises(httpx.RemoteProtocolError),
        client.stream("POST", openai_url(upstream), json=chat(stream=True)) as response,
    ):
        lines.extend(response.iter_lines())

    assert "data: [DONE]" not in lines
    assert openai_pieces(sse_data(lines)) == ["echo: "]


@pytest.mark.parametrize("api_url", [openai_url, anthropic_url, ollama_url])
def test_stream_fail_after_delivers_that_many_pieces_then_breaks(
    upstream: FakeUpstream, client: httpx.Client, api_url: Any
) -> None:
    upstream.set_fault(stream_fail_after=2)
    lines: list[str] = []

    with (
        pytest.raises(httpx.TransportError),
        client.stream("POST", api_url(upstream), json=chat("a b c d", stream=True)) as response,
    ):
        lines.extend(line for line in response.iter_lines() if line)

    text = "".join(lines)
    assert "echo: " in text
    assert '"a ' in text
    assert '"b ' not in text


def test_stream_fail_after_counts_openai_content_pieces_exactly(
    upstream: FakeUpstream, client: httpx.Client
) -> None:
    upstream.set_fault(stream_fail_after=2)
    lines: list[str] = []

    with (
        pytest.raises(httpx.TransportError),
        client.stream("POST", openai_url(upstream), json=chat("a b c", stream=True)) as response,
    ):
        lines.extend(response.iter_lines())

    assert openai_pieces(sse_data(lines)) == ["echo: ", "a "]


def test_chunk_delay_slows_stream_enough_to_time_out(upstream: FakeUpstream) -> None:
    upstream.set_fault(chunk_delay=2)
    lines: list[str] = []

    with (
        httpx.Client(timeout=httpx.Timeout(5, read=0.2)) as slow_client,
        pytest.raises(httpx.ReadTimeout),
        slow_client.stream("POST", openai_url(upstream), json=chat(stream=True)) as response,
    ):
        lines.extend(response.iter_lines())

    assert openai_pieces(sse_data(lines)) == ["echo: "]


def test_auth_key_requires_bearer_token(upstream: FakeUpstream, client: httpx.Client) -> None:
    upstream.set_fault(auth_key="sk-good")
    url = openai_url(upstream)

    missing = client.post(url, json=chat())
    wrong = client.post(url, json=chat(), headers={"Authorization": "Bearer sk-bad"})
    right = client.post(url, json=chat(), headers={"Authorization": "Bearer sk-good"})

    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "authentication_error"
    assert wrong.status_code == 401
    assert right.status_code == 200


def test_auth_key_requires_x_api_key_for_anthropic(
    upstream: FakeUpstream, client: httpx.Client
) -> None:
    upstream.set_fault(auth_key="ant-good")
    url = anthropic_url(upstream)
    body = chat(max_tokens=8)

    bearer = client.post(url, json=body, headers={"Authorization": "Bearer ant-good"})
    right = client.post(url, json=body, headers={"x-api-key": "ant-good"})

    assert bearer.status_code == 401
    assert bearer.json()["error"]["type"] == "authentication_error"
    assert right.status_code == 200


def test_set_fault_takes_a_fault_object_and_keyword_overrides(
    upstream: FakeUpstream, client: httpx.Client
) -> None:
    upstream.set_fault("p", Fault(status=500, times=1), status=418)

    assert client.post(openai_url(upstream, "p"), json=chat()).status_code == 418
    assert client.post(openai_url(upstream, "p"), json=chat()).status_code == 200


def test_fault_rejects_invalid_values() -> None:
    with pytest.raises(ValueError, match="times"):
        Fault(times=0)
    with pytest.raises(ValueError, match="status"):
        Fault(status=99)
    with pytest.raises(ValueError, match="delay"):
        Fault(delay="slow")  # type: ignore[arg-type]


def test_clear_faults_heals_every_scope(upstream: FakeUpstream, client: httpx.Client) -> None:
    upstream.set_fault("a", status=500)
    upstream.set_fault("b", reset=True)

    upstream.clear_faults()

    assert client.post(openai_url(upstream, "a"), json=chat()).status_code == 200
    assert client.post(openai_url(upstream, "b"), json=chat()).status_code == 200


# --- control API ----------------------------------------------------------------------------


def test_control_fault_over_http_applies_to_scope(
    upstream: FakeUpstream, client: httpx.Client
) -> None:
    response = client.post(
        f"{upstream.url}/_fault", json={"scope": "primary", "status": 503, "retry_after": 2}
    )

    assert response.status_code == 200
    assert response.json()["ok"] is True
    faulted = client.post(openai_url(upstream, "primary"), json=chat())
    assert faulted.status_code == 503
    assert faulted.headers["retry-after"] == "2"


def test_control_fault_clear_heals_scope(upstream: FakeUpstream, client: httpx.Client) -> None:
    upstream.set_fault("primary", status=500)

    client.post(f"{upstream.url}/_fault", json={"scope": "primary", "clear": True})

    assert client.post(openai_url(upstream, "primary"), json=chat()).status_code == 200


def test_control_fault_sets_reply_prefix(upstream: FakeUpstream, client: httpx.Client) -> None:
    client.post(f"{upstream.url}/_fault", json={"scope": "s", "reply_prefix": "s: "})

    data = client.post(openai_url(upstream, "s"), json=chat("hi")).json()

    assert data["choices"][0]["message"]["content"] == "s: hi"


def test_control_fault_unknown_field_is_400_naming_it(
    upstream: FakeUpstream, client: httpx.Client
) -> None:
    response = client.post(f"{upstream.url}/_fault", json={"scope": "p", "stauts": 500})

    assert response.status_code == 400
    assert "stauts" in response.json()["error"]["message"]
    assert client.post(openai_url(upstream, "p"), json=chat()).status_code == 200


def test_control_stats_reports_hits_and_faults(
    upstream: FakeUpstream, client: httpx.Client
) -> None:
    upstream.set_fault("primary", status=500)
    client.post(openai_url(upstream, "primary"), json=chat())
    client.post(openai_url(upstream, "primary"), json=chat())
    client.post(openai_url(upstream, "secondary"), json=chat())

    scopes = client.get(f"{upstream.url}/_stats").json()["scopes"]

    assert scopes["primary"]["hits"] == 2
    assert scopes["primary"]["fault"]["status"] == 500
    assert scopes["secondary"] == {**scopes["secondary"], "hits": 1, "fault": None}


def test_control_reset_and_health(upstream: FakeUpstream, client: httpx.Client) -> None:
    upstream.set_fault(status=500)
    client.post(openai_url(upstream), json=chat())

    assert client.post(f"{upstream.url}/_reset").json() == {"ok": True}
    assert client.get(f"{upstream.url}/_health").json() == {"ok": True}
    assert upstream.hits() == 0
    assert client.post(openai_url(upstream), json=chat()).status_code == 200


# --- connections ----------------------------------------------------------------------------


def test_keep_alive_reuses_one_connection(upstream: FakeUpstream, client: httpx.Client) -> None:
    first = client.post(openai_url(upstream), json=chat())
    second = client.post(openai_url(upstream), json=chat(stream=True))

    assert (first.status_code, second.status_code) == (200, 200)
    assert upstream.hits() == 2
    assert upstream.connections == 1


def test_pipelined_raw_requests_keep_framing(upstream: FakeUpstream) -> None:
    def request(path: str, body: bytes) -> bytes:
        head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
        return head.encode() + body

    payload = json.dumps(chat()).encode()
    with socket.create_connection(("127.0.0.1", upstream.port), timeout=5) as sock:
        sock.sendall(request("/nowhere", b"{}") + request("/v1/chat/completions", payload))
        reader = sock.makefile("rb")
        statuses = []
        for _ in range(2):
            statuses.append(int(reader.readline().split()[1]))
            length = 0
            while (line := reader.readline()) != b"\r\n":
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            body = reader.read(length)
        reader.close()

    assert statuses == [404, 200]
    assert json.loads(body)["object"] == "chat.completion"


def test_client_hanging_up_mid_stream_leaves_server_serving(
    upstream: FakeUpstream, client: httpx.Client
) -> None:
    upstream.set_fault(chunk_delay=1, times=1)

    with client.stream("POST", openai_url(upstream), json=chat(stream=True)) as response:
        first_line = next(response.iter_lines())
    follow_up = client.post(openai_url(upstream), json=chat())

    assert first_line.startswith("data: ")
    assert follow_up.status_code == 200


def test_stop_returns_while_a_delayed_request_is_in_flight() -> None:
    up = FakeUpstream().start()
    outcome: list[BaseException] = []

    def slow_request() -> None:
        try:
            httpx.post(openai_url(up), json=chat(), timeout=30)
        except httpx.HTTPError as exc:
            outcome.append(exc)

    up.set_fault(delay=30)
    requester = threading.Thread(target=slow_request, daemon=True)
    requester.start()
    wait_for_hits(up, "", 1)

    stopper = threading.Thread(target=up.stop, daemon=True)
    stopper.start()
    stopper.join(timeout=10)
    requester.join(timeout=10)

    assert not stopper.is_alive()
    assert not requester.is_alive()
    assert outcome and isinstance(outcome[0], httpx.TransportError)
    up.stop()  # idempotent


@pytest.mark.slow
def test_module_runs_in_foreground_and_exits_on_ctrl_c() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "flexiai_django.testing.fake_upstream", "--port", "0"],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("fake upstream listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        assert httpx.get(f"{url}/_health", timeout=5).json() == {"ok": True}

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


TOOLS_OPENAI = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]


def test_openai_format_calls_the_offered_tool(upstream: FakeUpstream,
                                              client: httpx.Client) -> None:
    data = client.post(openai_url(upstream), json=chat("find it", tools=TOOLS_OPENAI)).json()
    choice = data["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["function"] == {"name": "lookup", "arguments": '{"text": "find it"}'}
    none = client.post(openai_url(upstream),
                       json=chat("find it", tools=TOOLS_OPENAI, tool_choice="none")).json()
    assert none["choices"][0]["message"]["content"] == "echo: find it"


def test_anthropic_format_calls_the_offered_tool_and_reads_tool_results(
        upstream: FakeUpstream, client: httpx.Client) -> None:
    tools = [{"name": "lookup", "input_schema": {"type": "object"}}]
    data = client.post(anthropic_url(upstream), json=chat("find it", tools=tools)).json()
    assert data["stop_reason"] == "tool_use"
    assert data["content"] == [{"type": "tool_use", "id": data["content"][0]["id"],
                                "name": "lookup", "input": {"text": "find it"}}]
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x",
                                           "content": "found"}]}
    body = {"model": "m", "tools": tools, "messages": [*chat("find it")["messages"], result]}
    data = client.post(anthropic_url(upstream), json=body).json()
    assert data["content"][0]["text"] == "echo: tool said: found"


def test_anthropic_streams_tool_input_as_json_deltas(upstream: FakeUpstream,
                                                     client: httpx.Client) -> None:
    tools = [{"name": "lookup", "input_schema": {"type": "object"}}]
    with client.stream("POST", anthropic_url(upstream),
                       json=chat("find it", tools=tools, stream=True)) as response:
        events = [json.loads(d) for d in sse_data(list(response.iter_lines()))]
    partial = "".join(e["delta"]["partial_json"] for e in events
                      if e["type"] == "content_block_delta")
    assert json.loads(partial) == {"text": "find it"}
    assert [e["type"] for e in events][-2:] == ["message_delta", "message_stop"]


def test_ollama_format_calls_tools_with_object_arguments(upstream: FakeUpstream,
                                                         client: httpx.Client) -> None:
    data = client.post(ollama_url(upstream),
                       json=chat("find it", tools=TOOLS_OPENAI, stream=False)).json()
    assert data["message"]["tool_calls"] == [
        {"function": {"name": "lookup", "arguments": {"text": "find it"}}}]


@pytest.mark.parametrize(("api_url", "says"), [(openai_url, "context_length_exceeded"),
                                                (anthropic_url, "prompt is too long"),
                                                (ollama_url, "exceeds the context length")])
def test_too_long_refuses_in_each_formats_words(upstream: FakeUpstream, client: httpx.Client,
                                                api_url: Any, says: str) -> None:
    control = client.post(f"{upstream.url}/_fault", json={"too_long": True})
    assert control.status_code == 200
    response = client.post(api_url(upstream), json=chat())
    assert response.status_code == 400
    assert says in response.text
