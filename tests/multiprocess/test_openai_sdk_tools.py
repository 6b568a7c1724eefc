"""The official openai SDK, unchanged, running agent loops through the gateway under uvicorn:
tools on every provider kind, plain and streamed, sync and async, failing over between
kinds mid-conversation; JSON mode and images reaching each kind; usage; models; /v1 errors.

The demo providers point at the fake upstream: demo-primary (OpenAI-compatible),
demo-secondary (Anthropic), demo-local (Ollama). The fake calls the first offered tool
with ``{"text": <last user text>}`` and answers a tool result with ``tool said: …``.
"""

import asyncio
import json

import httpx
import openai
import pytest

from .conftest import start

pytestmark = [pytest.mark.slow, pytest.mark.django_db]
KINDS = {"demo-primary": ("openai", "demo-gpt"), "demo-secondary": ("anthropic", "demo-claude"),
         "demo-local": ("ollama", "demo-llama")}
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city now.",
    "parameters": {"type": "object", "properties": {"text": {"type": "string"}},
                   "required": ["text"]}}}]
ASK = [{"role": "system", "content": "Use the tools."},
       {"role": "user", "content": "weather in Paris"}]
PIXEL = "data:image/png;base64,iVBORw0KGgo="


@pytest.fixture(scope="module")
def site(seeded):
    server = start("uvicorn", seeded, workers=2, FLEXIAI_ANONYMOUS_LOOPBACK="1")
    yield server
    server.stop()


@pytest.fixture
def sdk(site, fake_upstream):
    return openai.OpenAI(base_url=f"{site.url}/v1", api_key="not-needed", max_retries=0)


def call_turn(sdk, model, messages, stream):
    """One assistant turn as a message dict for the history, plus who served it."""
    if not stream:
        raw = sdk.chat.completions.with_raw_response.create(model=model, messages=messages,
                                                            tools=TOOLS)
        reply = raw.parse()
        choice = reply.choices[0]
        message = choice.message.model_dump(exclude_none=True, include={"role", "content",
                                                                        "tool_calls"})
        message.setdefault("content", None)
        return message, choice.finish_reason, raw.headers["x-flexiai-provider"], reply.model
    raw = sdk.chat.completions.with_raw_response.create(model=model, messages=messages,
                                                        tools=TOOLS, stream=True)
    message, finish, model_name = assemble(list(raw.parse()))
    return message, finish, raw.headers["x-flexiai-provider"], model_name


def assemble(chunks):
    """Streamed chunks put together as a client does: text, tool calls by index, finish."""
    text, calls, finish, models = "", {}, None, set()
    for chunk in chunks:
        models.add(chunk.model)
        for choice in chunk.choices:
            delta = choice.delta
            text += delta.content or ""
            for piece in delta.tool_calls or ():
                call = calls.setdefault(piece.index, {"id": None, "type": "function",
                                                      "function": {"name": None,
                                                                   "arguments": ""}})
                call["id"] = piece.id or call["id"]
                if piece.function:
                    call["function"]["name"] = piece.function.name or call["function"]["name"]
                    call["function"]["arguments"] += piece.function.arguments or ""
            finish = choice.finish_reason or finish
    assert len(models) == 1, f"every chunk names the same model: {models}"
    message = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return message, finish, models.pop()


def loop(sdk, model, stream, *, between=None):
    """Tool call → tool result → final answer; ``between`` runs after the call (a fault)."""
    history = list(ASK)
    message, finish, served_first, model_name = call_turn(sdk, model, history, stream)
    assert finish == "tool_calls"
    assert message["content"] is None
    [call] = message["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"text": "weather in Paris"}
    if between:
        between()
    history += [message, {"role": "tool", "tool_call_id": call["id"], "content": "18C"}]
    final, finish, served_last, _ = call_turn(sdk, model, history, stream)
    assert finish == "stop"
    assert final["content"] == "echo: tool said: 18C"
    return served_first, served_last, model_name, call["id"]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("provider", list(KINDS))
def test_an_agent_loop_on_each_provider_kind(sdk, provider, stream):
    first, last, model, _ = loop(sdk, provider, stream)
    assert first == last == provider
    assert model == KINDS[provider][1]


@pytest.mark.parametrize("provider", list(KINDS))
def test_an_async_streamed_agent_loop(site, fake_upstream, provider):
    async def run():
        client = openai.AsyncOpenAI(base_url=f"{site.url}/v1", api_key="x", max_retries=0)
        async with client:
            history = list(ASK)
            stream = await client.chat.completions.create(model=provider, messages=history,
                                                          tools=TOOLS, stream=True)
            message, finish, _ = assemble([c async for c in stream])
            assert finish == "tool_calls"
            call = message["tool_calls"][0]
            history += [message, {"role": "tool", "tool_call_id": call["id"], "content": "18C"}]
            reply = await client.chat.completions.create(model=provider, messages=history,
                                                         tools=TOOLS)
            return reply.choices[0].message.content

    assert asyncio.run(run()) == "echo: tool said: 18C"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_a_loop_started_on_openai_kind_continues_on_anthropic(sdk, fake_upstream, stream):
    first, last, _, call_id = loop(
        sdk, "auto", stream,
        between=lambda: fake_upstream.set_fault("demo-primary", status=503))
    assert (first, last) == ("demo-primary", "demo-secondary")
    blocks = [b for m in fake_upstream.requests("demo-secondary")[-1].json["messages"]
              for b in m["content"] if isinstance(m["content"], list)]
    assert {"type": "tool_result", "tool_use_id": call_id, "content": "18C"} in blocks


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_a_loop_started_on_anthropic_continues_on_openai_kind(sdk, fake_upstream, stream):
    fake_upstream.set_fault("demo-primary", status=503)

    def swap():
        fake_upstream.set_fault("demo-primary", None)
        fake_upstream.set_fault("demo-secondary", status=529)

    first, last, _, call_id = loop(sdk, "auto", stream, between=swap)
    assert (first, last) == ("demo-secondary", "demo-primary")
    assert call_id.startswith("toolu_")
    sent = fake_upstream.requests("demo-primary")[-1].json["messages"]
    assert sent[-2]["tool_calls"][0]["id"] == call_id
    assert sent[-1] == {"role": "tool", "tool_call_id": call_id, "content": "18C"}


def test_a_loop_started_on_anthropic_continues_on_ollama(sdk, fake_upstream):
    fake_upstream.set_fault("demo-primary", status=503)

    def down():
        fake_upstream.set_fault("demo-secondary", status=529)

    first, last, _, _ = loop(sdk, "auto", False, between=down)
    assert (first, last) == ("demo-secondary", "demo-local")
    sent = fake_upstream.requests("demo-local")[-1].json["messages"]
    assert sent[-1] == {"role": "tool", "content": "18C", "tool_name": "get_weather"}
    assert sent[-2]["tool_calls"][0]["function"]["arguments"] == {"text": "weather in Paris"}


IMAGE_ASK = [{"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                          {"type": "image_url", "image_url": {"url": PIXEL}}]}]


def test_json_mode_and_an_image_reach_each_kind_in_its_own_format(sdk, fake_upstream):
    for provider in KINDS:
        reply = sdk.chat.completions.create(model=provider, messages=IMAGE_ASK,
                                            response_format={"type": "json_object"})
        assert reply.choices[0].message.content == "echo: what is this?"
    openai_kind = fake_upstream.requests("demo-primary")[-1].json
    assert openai_kind["response_format"] == {"type": "json_object"}
    assert openai_kind["messages"] == IMAGE_ASK
    anthropic = fake_upstream.requests("demo-secondary")[-1].json
    assert "JSON" in anthropic["system"]
    assert anthropic["messages"][0]["content"][1] == {
        "type": "image", "source": {"type": "base64", "media_type": "image/png",
                                    "data": "iVBORw0KGgo="}}
    ollama = fake_upstream.requests("demo-local")[-1].json
    assert ollama["format"] == "json"
    assert ollama["messages"][0]["images"] == ["iVBORw0KGgo="]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_json_schema_on_anthropic_comes_back_as_json_text(sdk, fake_upstream, stream):
    schema = {"type": "json_schema", "json_schema": {
        "name": "echo", "schema": {"type": "object", "properties": {"text": {"type": "string"}}}}}
    reply = sdk.chat.completions.create(model="demo-secondary", messages=ASK,
                                        response_format=schema, stream=stream)
    if stream:
        message, finish, _ = assemble(list(reply))
        content = message["content"]
        assert "tool_calls" not in message
    else:
        content, finish = reply.choices[0].message.content, reply.choices[0].finish_reason
    assert json.loads(content) == {"text": "weather in Paris"}
    assert finish == "stop"
    sent = fake_upstream.requests("demo-secondary")[-1].json
    assert sent["tool_choice"] == {"type": "tool", "name": "json_response"}


@pytest.mark.parametrize("provider", list(KINDS))
def test_streams_report_real_usage_on_request(sdk, provider):
    chunks = list(sdk.chat.completions.create(model=provider, messages=ASK, stream=True,
                                              stream_options={"include_usage": True}))
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_models_list(sdk):
    ids = [m.id for m in sdk.models.list()]
    assert {"auto", "demo-primary", "demo-secondary", "demo-local", "demo-gpt"} <= set(ids)
    assert sdk.models.retrieve("demo-claude").owned_by == "anthropic"


def test_v1_paths_answer_json_errors(sdk, site):
    with pytest.raises(openai.NotFoundError):
        sdk.embeddings.create(model="demo-primary", input="hi")
    with httpx.Client(base_url=site.url, timeout=5) as client:
        for method, path, status in (("GET", "/v1/nope", 404), ("PUT", "/v1/models", 405),
                                     ("GET", "/v1/chat/completions", 405)):
            response = client.request(method, path)
            assert response.status_code == status
            assert response.headers["content-type"] == "application/json"
            assert response.json()["error"]["message"]


def test_an_unsupported_field_is_a_bad_request_naming_it(sdk):
    with pytest.raises(openai.BadRequestError, match="logit_bias"):
        sdk.chat.completions.create(model="demo-secondary", messages=ASK,
                                    logit_bias={"50256": -100})


def test_refusal_and_logprobs_reach_the_sdk(sdk, fake_upstream):
    reply = sdk.chat.completions.create(model="demo-primary", messages=ASK, logprobs=True,
                                        top_logprobs=1)
    tokens = [t.token for t in reply.choices[0].logprobs.content]
    assert "".join(tokens) == reply.choices[0].message.content
    chunks = list(sdk.chat.completions.create(model="demo-primary", messages=ASK,
                                              logprobs=True, stream=True))
    streamed = [t.token for c in chunks for ch in c.choices if ch.logprobs
                for t in ch.logprobs.content]
    assert "".join(streamed) == "echo: weather in Paris"

    fake_upstream.set_fault("demo-primary", refusal=True)
    message = sdk.chat.completions.create(model="demo-primary", messages=ASK).choices[0].message
    assert (message.content, message.refusal) == (None, "I can't help with that.")
    chunks = list(sdk.chat.completions.create(model="demo-primary", messages=ASK, stream=True))
    assert "".join(ch.delta.refusal or "" for c in chunks for ch in c.choices) == (
        "I can't help with that.")


def test_n_answers_plain_and_streamed(sdk):
    reply = sdk.chat.completions.create(model="demo-primary", messages=ASK, n=2)
    assert [c.index for c in reply.choices] == [0, 1]
    assert {c.message.content for c in reply.choices} == {"echo: weather in Paris"}
    chunks = list(sdk.chat.completions.create(model="demo-primary", messages=ASK, n=2,
                                              stream=True))
    for index in (0, 1):
        choices = [ch for c in chunks for ch in c.choices if ch.index == index]
        assert "".join(ch.delta.content or "" for ch in choices) == "echo: weather in Paris"
        assert [ch.finish_reason for ch in choices if ch.finish_reason] == ["stop"]
    with pytest.raises(openai.BadRequestError, match="'n'"):
        sdk.chat.completions.create(model="demo-secondary", messages=ASK, n=2)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_advisory_fields_a_kind_cannot_carry_are_named_as_dropped(sdk, fake_upstream, stream):
    raw = sdk.chat.completions.with_raw_response.create(
        model="demo-local", messages=ASK, user="u-1", metadata={"team": "a"}, stream=stream)
    assert raw.headers["x-flexiai-dropped-params"] == "metadata, user"
    sent = fake_upstream.requests("demo-local")[-1].json
    assert "user" not in sent and "metadata" not in sent


@pytest.mark.parametrize("provider", list(KINDS))
def test_the_sdk_message_object_goes_back_into_the_history_as_agents_do(sdk, provider):
    history = list(ASK)
    message = sdk.chat.completions.create(model=provider, messages=history,
                                          tools=TOOLS).choices[0].message
    history += [message, {"role": "tool", "tool_call_id": message.tool_calls[0].id,
                          "content": "18C"}]
    reply = sdk.chat.completions.create(model=provider, messages=history, tools=TOOLS)
    assert reply.choices[0].message.content == "echo: tool said: 18C"
