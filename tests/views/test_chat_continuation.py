"""POST /v1/chat/completions with ``stream: true``: a stream broken mid-answer reads as one.

The client gets the whole answer once, then the finish chunk and usage (summed over the
providers that wrote it) marked ``flexiai.continued``, then one ``[DONE]``.
"""

import json

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from flexiai_django.breakers import get_store

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]
URL = "/v1/chat/completions"
QUESTION = "one two three four five"
ASK = {"messages": [{"role": "user", "content": QUESTION}], "stream": True,
       "stream_options": {"include_usage": True}}
WHOLE = "echo: " + QUESTION
OPEN = {"ALLOW_ANONYMOUS_LOOPBACK": True, "CACHE_ENABLED": False,
        # shared state, so the breakers outlive the settings override
        "BREAKER_STORE": {"BACKEND": "flexiai_django.breakers.redis_store.RedisBreakerStore"}}


@pytest.fixture
def two(make_provider, fake_upstream):
    make_provider("primary", priority=1)
    make_provider("secondary", kind="anthropic", priority=2)
    for scope in ("primary", "secondary"):
        fake_upstream.set_reply_prefix(scope, "echo: ")


async def events_of(async_client, flexiai):
    with override_settings(FLEXIAI=flexiai):
        response = await async_client.post(URL, ASK, content_type="application/json")
        body = b"".join([chunk async for chunk in response.streaming_content]).decode()
    assert response.status_code == 200
    return [line[len("data: "):] for line in body.split("\n\n") if line]


def text_of(chunks):
    return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])


async def test_a_broken_stream_is_continued_into_one_answer(async_client, two, fake_upstream):
    fake_upstream.set_fault("primary", stream_fail_after=3)
    events = await events_of(async_client, OPEN)
    assert events.count("[DONE]") == 1 and events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert not [c for c in chunks if "error" in c]
    assert text_of(chunks) == WHOLE
    finish, usage = chunks[-2], chunks[-1]
    assert finish["choices"][0]["finish_reason"] == "stop"
    continued = {"continued": True, "providers": ["primary", "secondary"],
                 "provider": "secondary"}
    assert continued.items() <= finish["flexiai"].items()
    assert continued.items() <= usage["flexiai"].items()
    assert chunks[0]["flexiai"]["provider"] == "primary"  # before the break, as sent
    # usage is the sum: the primary never said (it broke before its end), the secondary
    # (Anthropic) said its prompt and answer; the fake counts words for tokens
    secondary = fake_upstream.requests("secondary")[-1].json
    prompt = len(QUESTION.split()) + 3  # the prefill: "echo: one two"
    assert secondary["messages"][-1]["role"] == "assistant"  # a prefill
    assert usage["usage"] == {"prompt_tokens": prompt, "completion_tokens": 3,
                              "total_tokens": prompt + 3}
    state = await sync_to_async(get_store().get)("llm:primary")
    assert (state.failures, state.last_error) == (1, "stream_interrupted")


async def test_with_continuation_off_the_stream_ends_with_an_error_event(async_client, two,
                                                                       fake_upstream):
    fake_upstream.set_fault("primary", stream_fail_after=3)
    events = await events_of(async_client, {**OPEN, "CONTINUE_STREAMS": False})
    error = json.loads(events[-1])["error"]
    assert error["code"] == "stream_interrupted" and "continuation is off" in error["message"]
    assert text_of([json.loads(e) for e in events[:-1]]) == "echo: one two "
    assert "[DONE]" not in events and fake_upstream.hits("secondary") == 0
