"""The official openai SDK, unchanged, pointed at the gateway running under uvicorn."""

import asyncio

import openai
import pytest

from .conftest import start

pytestmark = [pytest.mark.slow, pytest.mark.django_db]
HI = [{"role": "user", "content": "say hi to the gateway"}]


@pytest.fixture(scope="module")
def site(seeded):
    server = start("uvicorn", seeded, workers=2)
    yield server
    server.stop()


@pytest.fixture
def sdk(site, fake_upstream):
    return openai.OpenAI(base_url=f"{site.url}/v1", api_key="not-needed", max_retries=0)


def test_a_plain_completion(sdk):
    reply = sdk.chat.completions.create(model="demo-primary", messages=HI, temperature=0.2)
    assert reply.choices[0].message.content == "echo: say hi to the gateway"
    assert reply.model == "demo-gpt"
    assert reply.usage.total_tokens > 0


def test_which_provider_served_is_in_the_headers(sdk, fake_upstream):
    raw = sdk.chat.completions.with_raw_response.create(messages=HI, model="demo-claude")
    assert raw.headers["x-flexiai-provider"] == "demo-secondary"
    fake_upstream.set_fault("demo-primary", status=500)
    with pytest.raises(openai.InternalServerError, match="No provider"):
        sdk.chat.completions.create(messages=HI, model="demo-gpt")  # pinned, and it is down
    raw = sdk.chat.completions.with_raw_response.create(messages=HI, model="auto")
    assert raw.headers["x-flexiai-provider"] == "demo-secondary"
    assert raw.headers["x-flexiai-attempts"] == "2"


def test_async_client(site, fake_upstream):
    async def ask():
        client = openai.AsyncOpenAI(base_url=f"{site.url}/v1", api_key="x", max_retries=0)
        async with client:
            return await client.chat.completions.create(model="demo-primary", messages=HI)

    assert asyncio.run(ask()).choices[0].message.content == "echo: say hi to the gateway"


def test_streaming(sdk):
    chunks = list(sdk.chat.completions.create(model="demo-primary", messages=HI, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: say hi to the gateway"
    assert len(chunks) > 3
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_streaming_usage_on_request(sdk):
    chunks = list(sdk.chat.completions.create(model="demo-claude", messages=HI, stream=True,
                                              stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


def test_async_streaming(site):
    async def ask():
        client = openai.AsyncOpenAI(base_url=f"{site.url}/v1", api_key="x", max_retries=0)
        async with client:
            stream = await client.chat.completions.create(messages=HI, model="demo-primary",
                                                          stream=True)
            return "".join([c.choices[0].delta.content or "" async for c in stream
                            if c.choices])

    assert asyncio.run(ask()) == "echo: say hi to the gateway"


def test_a_stream_fails_over_before_its_first_chunk(sdk, fake_upstream):
    fake_upstream.set_fault("demo-primary", status=502)
    raw = sdk.chat.completions.with_raw_response.create(messages=HI, model="auto", stream=True)
    assert raw.headers["x-flexiai-provider"] == "demo-secondary"
    chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "echo: say hi to the gateway")
    assert chunks[0].model == "demo-claude"


def test_a_failure_after_the_first_chunk_ends_the_stream_with_an_error(sdk, fake_upstream):
    fake_upstream.set_fault("demo-primary", stream_fail_after=2)
    received = []
    with pytest.raises(openai.APIError, match="stream failed"):
        for chunk in sdk.chat.completions.create(messages=HI, model="demo-primary",
                                                 stream=True):
            received.append(chunk)
    assert received, "the first chunks reached the client before the error"
    assert fake_upstream.hits("demo-secondary") == 0


def test_a_stream_cut_mid_answer_is_continued_by_the_next_provider(sdk, fake_upstream):
    fake_upstream.set_fault("demo-primary", stream_fail_after=3)
    chunks = list(sdk.chat.completions.create(messages=HI, model="auto", stream=True,
                                              stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "echo: say hi to the gateway")
    finish, usage = chunks[-2], chunks[-1]
    assert finish.choices[0].finish_reason == "stop" and usage.usage.total_tokens > 0
    for last in (finish, usage):  # unknown fields are kept by the SDK
        assert last.flexiai["continued"] is True
        assert last.model_extra["flexiai"]["providers"] == ["demo-primary", "demo-secondary"]
    assert (fake_upstream.hits("demo-primary"), fake_upstream.hits("demo-secondary")) == (1, 1)


def test_sdk_errors_map_to_its_exception_classes(sdk, fake_upstream):
    with pytest.raises(openai.BadRequestError, match="temperature"):
        sdk.chat.completions.create(model="demo-primary", messages=HI, temperature=9)
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model="no-such-model", messages=HI)
