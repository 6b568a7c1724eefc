"""POST /v1/chat/completions: OpenAI's request and error shapes, in-process."""

import json

import pytest
from django.test import override_settings

pytestmark = pytest.mark.django_db(transaction=True)
URL = "/v1/chat/completions"
HELLO = {"messages": [{"role": "user", "content": "hello"}]}
OPEN = {"ALLOW_ANONYMOUS_LOOPBACK": True}  # the demo's setting; keys are tested in test_auth


@pytest.fixture
def two(make_provider):
    make_provider("primary", priority=1)
    make_provider("secondary", priority=2)


def post(client, body, **extra):
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post(URL, data, content_type="application/json", **extra)


def test_a_completion_in_openai_shape_says_who_served_it(client, two):
    response = post(client, {**HELLO, "temperature": 0.3})
    body = response.json()
    assert response.status_code == 200
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "primary: hello"}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["total_tokens"] > 0
    assert body["flexiai"]["provider"] == "primary"
    assert (response["X-FlexiAI-Provider"], response["X-FlexiAI-Tier"]) == ("primary", "provider")


def test_failover_is_visible_in_headers(client, two, fake_upstream):
    fake_upstream.set_fault("primary", status=503)
    response = post(client, HELLO)
    assert response["X-FlexiAI-Provider"] == "secondary"
    assert response["X-FlexiAI-Attempts"] == "2"


def test_model_names_a_provider(client, two):
    assert post(client, {**HELLO, "model": "secondary"}).json()["flexiai"]["provider"] == (
        "secondary")


def test_an_unknown_model_is_a_404(client, two):
    response = post(client, {**HELLO, "model": "gpt-17"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


def test_no_provider_is_a_503_with_retry_after(client, two, fake_upstream):
    fake_upstream.set_fault("primary", status=500)
    fake_upstream.set_fault("secondary", status=500)
    with override_settings(FLEXIAI={**OPEN, "DEGRADED_MESSAGE": None, "CACHE_ENABLED": False}):
        response = post(client, HELLO)
    assert response.status_code == 503
    assert int(response["Retry-After"]) >= 1
    assert response.json()["error"]["code"] == "no_provider_available"


def test_the_degraded_tier_is_marked(client, two, fake_upstream):
    fake_upstream.set_fault("primary", status=500)
    fake_upstream.set_fault("secondary", status=500)
    with override_settings(FLEXIAI={**OPEN, "DEGRADED_MESSAGE": "Later.",
                                    "CACHE_ENABLED": False}):
        response = post(client, HELLO)
    assert response.status_code == 200
    assert response["X-FlexiAI-Tier"] == "degraded"
    assert response.json()["choices"][0]["message"]["content"] == "Later."


def test_a_provider_rejecting_the_request_is_a_400_not_a_failover(client, two, fake_upstream):
    fake_upstream.set_fault("primary", status=400)
    response = post(client, HELLO)
    assert response.status_code == 400
    assert fake_upstream.hits("secondary") == 0


BAD = [
    (b"{not json", 400, None, "not valid JSON"),
    (b"[1, 2]", 400, None, "JSON object"),
    ({}, 400, "messages", "required"),
    ({"messages": []}, 400, "messages", "non-empty"),
    ({"messages": "hi"}, 400, "messages", "non-empty array"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, 400, "messages[0].role", "wizard"),
    ({"messages": [{"role": "user", "content": 3}]}, 400, "messages[0]", "content"),
    ({"messages": ["hi"]}, 400, "messages[0]", "object"),
    ({**HELLO, "temperature": 3}, 400, "temperature", "0 to 2"),
    ({**HELLO, "temperature": "hot"}, 400, "temperature", "number"),
    ({**HELLO, "top_p": -0.1}, 400, "top_p", "0 to 1"),
    ({**HELLO, "max_tokens": 0}, 400, "max_tokens", "integer"),
    ({**HELLO, "max_tokens": 2.5}, 400, "max_tokens", "integer"),
    ({**HELLO, "stream": "yes"}, 400, "stream", "true or false"),
    ({**HELLO, "stop": ["a", "b", "c", "d", "e"]}, 400, "stop", "up to 4"),
    ({**HELLO, "n": 0}, 400, "n", "1 to 128"),
    ({**HELLO, "model": ""}, 400, "model", "non-empty"),
]


@pytest.mark.parametrize(("body", "status", "param", "says"), BAD)
def test_bad_input_is_refused_with_what_is_wrong(client, two, fake_upstream, body, status,
                                                 param, says):
    response = post(client, body)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert says in error["message"]
    assert fake_upstream.hits("primary") == 0


def test_an_oversized_body_is_a_413(client, two):
    with override_settings(FLEXIAI={**OPEN, "MAX_BODY_BYTES": 100}):
        response = post(client, {"messages": [{"role": "user", "content": "x" * 200}]})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_get_is_a_405_in_openai_shape(client):
    response = client.get(URL)
    assert response.status_code == 405 and "error" in response.json()


def test_text_parts_and_system_prompts_are_accepted(client, two, fake_upstream):
    body = {"messages": [{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": [{"type": "text", "text": "hel"},
                                                      {"type": "text", "text": "lo"}]}]}
    assert post(client, body).json()["choices"][0]["message"]["content"] == "primary: hello"


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_an_upstream_stream_without_done_after_its_finish_ends_normally(
        async_client, make_provider, fake_upstream):
    from asgiref.sync import sync_to_async

    await sync_to_async(make_provider)("primary")
    fake_upstream.set_fault("primary", no_end_marker=True)
    with override_settings(FLEXIAI=OPEN):
        response = await async_client.post(URL, {**HELLO, "stream": True},
                                           content_type="application/json")
        body = b"".join([chunk async for chunk in response.streaming_content]).decode()
    events = [line[len("data: "):] for line in body.split("\n\n") if line]
    assert events[-1] == "[DONE]" and '"error"' not in body
    assert json.loads(events[-2])["choices"][0]["finish_reason"] == "stop"
    assert "".join(json.loads(e)["choices"][0]["delta"].get("content", "")
                   for e in events[:-1]) == "primary: hello"


async def read_events(async_client, body):
    with override_settings(FLEXIAI=OPEN):
        response = await async_client.post(URL, {**body, "stream": True},
                                           content_type="application/json")
        text = b"".join([chunk async for chunk in response.streaming_content]).decode()
    return response, [line[len("data: "):] for line in text.split("\n\n") if line]


def streamed_text(events):
    return "".join(json.loads(e)["choices"][0]["delta"].get("content") or ""
                   for e in events[:-1] if json.loads(e).get("choices"))


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_stream_whose_first_token_is_late_is_served_by_the_next_provider_in_time(
        async_client, make_provider, fake_upstream):
    import time

    from asgiref.sync import sync_to_async

    await sync_to_async(make_provider)("primary", priority=1, timeout=10,
                                       first_token_timeout=0.5)
    await sync_to_async(make_provider)("secondary", priority=2, timeout=10)
    fake_upstream.set_fault("primary", first_token_delay=8)
    started = time.monotonic()
    response, events = await read_events(async_client, HELLO)
    assert time.monotonic() - started < 3  # the primary's timeout is 10 s
    assert (response["X-FlexiAI-Provider"], response["X-FlexiAI-Attempts"]) == ("secondary", "2")
    assert events[-1] == "[DONE]" and streamed_text(events) == "secondary: hello"


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_one_garbled_upstream_chunk_never_reaches_the_client(async_client, make_provider,
                                                                   fake_upstream):
    from asgiref.sync import sync_to_async

    await sync_to_async(make_provider)("primary", kind="anthropic")
    fake_upstream.set_fault("primary", malformed_chunk_at=1)
    response, events = await read_events(async_client, HELLO)
    assert response.status_code == 200 and events[-1] == "[DONE]"
    assert '"error"' not in "".join(events)
    assert streamed_text(events) == "primary: hello"


LONG = {"messages": [{"role": "user", "content": "lorem ipsum " * 200}]}


@pytest.fixture
def windows(make_provider):
    make_provider("primary", priority=1, context_window=100)
    make_provider("secondary", priority=2, context_window=4000)


def test_a_request_too_long_for_the_primary_window_goes_to_a_larger_one_unsent(
        client, windows, fake_upstream):
    response = post(client, LONG)
    assert response.status_code == 200 and response["X-FlexiAI-Provider"] == "secondary"
    assert response["X-FlexiAI-Attempts"] == "1" and fake_upstream.hits("primary") == 0


@pytest.mark.parametrize("stream", [False, True])
def test_a_request_too_long_for_every_window_is_a_400_with_no_call(client, windows,
                                                                   fake_upstream, stream):
    response = post(client, {**LONG, "max_tokens": 4000, "stream": stream})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded" and error["param"] == "messages"
    assert fake_upstream.hits("primary") == fake_upstream.hits("secondary") == 0
