"""Tools, JSON mode, images and roles reach each provider kind in its own format, and its
answers (tool calls included, whole and streamed) come back in one shape."""

import json

import httpx
import pytest

from flexiai_django.providers import get_adapter
from flexiai_django.providers.base import ProviderConfig
from flexiai_django.validation import parse

KINDS = {"openai": "openai", "openai_compatible": "openai", "anthropic": "anthropic",
         "ollama": "ollama"}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city now.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
ASK = [{"role": "developer", "content": "Use tools."},
       {"role": "user", "content": "weather in Paris"}]
CALLED = [*ASK, {"role": "assistant", "content": None, "tool_calls": [
    {"id": "call_1", "type": "function",
     "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}]
ANSWERED = [*CALLED, {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]
PIXEL = "data:image/png;base64,iVBORw0KGgo="


def request(messages, **fields):
    return parse(json.dumps({"messages": messages, **fields}).encode()).chat


@pytest.fixture
def adapter(fake_upstream):
    def make(kind):
        return get_adapter(ProviderConfig(
            name="up", kind=kind, model=f"{kind}-model", timeout=2.0,
            base_url=fake_upstream.base_url("up", api=KINDS[kind])))
    return make


@pytest.fixture
def client():
    with httpx.Client() as c:
        yield c


def sent(fake_upstream):
    return fake_upstream.requests("up")[-1].json


def assembled(deltas):
    """Streamed tool-call pieces put together the way the SDK does."""
    calls = {}
    for delta in deltas:
        for piece in delta.tool_calls:
            call = calls.setdefault(piece.index, {"id": None, "name": None, "arguments": ""})
            call["id"] = piece.id or call["id"]
            call["name"] = piece.name or call["name"]
            call["arguments"] += piece.arguments
    return [calls[i] for i in sorted(calls)]


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_tool_call_is_an_answer_whole_and_streamed(kind, adapter, client):
    chat = request(ASK, tools=[WEATHER])
    completion = adapter(kind).complete(client, chat)
    assert completion.content == ""
    assert completion.finish_reason == "tool_calls"
    [call] = completion.tool_calls
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"text": "weather in Paris"})
    assert call.id

    deltas = list(adapter(kind).stream(client, chat))
    [streamed] = assembled(deltas)
    assert streamed["name"] == "get_weather" and streamed["id"]
    assert json.loads(streamed["arguments"]) == {"text": "weather in Paris"}
    assert "tool_calls" in [d.finish_reason for d in deltas]


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_tool_result_gets_the_final_answer(kind, adapter, client):
    chat = request(ANSWERED, tools=[WEATHER])
    assert adapter(kind).complete(client, chat).content == "echo: tool said: sunny"
    deltas = list(adapter(kind).stream(client, chat))
    assert "".join(d.content for d in deltas) == "echo: tool said: sunny"


@pytest.mark.parametrize("kind", ["openai", "openai_compatible"])
def test_openai_kinds_get_the_conversation_as_sent(kind, adapter, client, fake_upstream):
    body = {"tools": [WEATHER], "tool_choice": "required", "parallel_tool_calls": False,
            "seed": 3, "response_format": {"type": "json_object"}, "logprobs": True,
            "top_logprobs": 2, "logit_bias": {"50256": -100}, "max_completion_tokens": 9}
    adapter(kind).complete(client, request(ANSWERED, **body))
    got = sent(fake_upstream)
    assert got["messages"] == ANSWERED
    assert {k: got[k] for k in body} == body
    assert "max_tokens" not in got


def test_anthropic_gets_tools_blocks_and_a_system_prompt(adapter, client, fake_upstream):
    chat = request([*ANSWERED, {"role": "user", "content": [
        {"type": "text", "text": "and this?"},
        {"type": "image_url", "image_url": {"url": PIXEL}},
        {"type": "image_url", "image_url": {"url": "https://img.test/a.png"}}]}],
        tools=[WEATHER], tool_choice="required", parallel_tool_calls=False, user="u-1")
    adapter("anthropic").complete(client, chat)
    got = sent(fake_upstream)
    assert got["system"] == "Use tools."
    assert got["tools"] == [{"name": "get_weather", "description": "The weather in a city now.",
                             "input_schema": WEATHER["function"]["parameters"]}]
    assert got["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert got["metadata"] == {"user_id": "u-1"}
    assert [m["role"] for m in got["messages"]] == ["user", "assistant", "user"]
    assert got["messages"][1]["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}]
    assert got["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
        {"type": "text", "text": "and this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://img.test/a.png"}}]


def test_ollama_gets_tools_images_and_named_tool_results(adapter, client, fake_upstream):
    chat = request([*ANSWERED, {"role": "user", "content": [
        {"type": "text", "text": "and this?"},
        {"type": "image_url", "image_url": {"url": PIXEL}}]}],
        tools=[WEATHER], seed=4, presence_penalty=0.5)
    adapter("ollama").complete(client, chat)
    got = sent(fake_upstream)
    assert got["tools"] == [WEATHER]
    assert got["messages"][0] == {"role": "system", "content": "Use tools."}
    assert got["messages"][2]["tool_calls"] == [
        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]
    assert got["messages"][3] == {"role": "tool", "content": "sunny", "tool_name": "get_weather"}
    assert got["messages"][4] == {"role": "user", "content": "and this?",
                                  "images": ["iVBORw0KGgo="]}
    assert got["options"] == {"seed": 4, "presence_penalty": 0.5}


SCHEMA = {"type": "json_schema", "json_schema": {
    "name": "city", "schema": {"type": "object", "properties": {"text": {"type": "string"}}}}}


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_json_schema_is_a_forced_tool_whose_input_is_the_answer(
        stream, adapter, client, fake_upstream):
    chat = request(ASK, response_format=SCHEMA)
    if stream:
        deltas = list(adapter("anthropic").stream(client, chat))
        content = "".join(d.content for d in deltas)
        assert not assembled(deltas)
        assert [d.finish_reason for d in deltas if d.finish_reason] == ["stop"]
    else:
        completion = adapter("anthropic").complete(client, chat)
        content, calls = completion.content, completion.tool_calls
        assert not calls and completion.finish_reason == "stop"
    assert json.loads(content) == {"text": "weather in Paris"}
    got = sent(fake_upstream)
    assert got["tool_choice"] == {"type": "tool", "name": "json_response"}
    assert got["tools"][0]["input_schema"] == SCHEMA["json_schema"]["schema"]


def test_anthropic_json_object_is_asked_for_in_the_system_prompt(adapter, client,
                                                                  fake_upstream):
    adapter("anthropic").complete(client, request(ASK, response_format={"type": "json_object"}))
    assert sent(fake_upstream)["system"].startswith("Use tools.\n\nReply with a single valid JSON")


@pytest.mark.parametrize(("fmt", "expected"), [({"type": "json_object"}, "json"),
                                               (SCHEMA, SCHEMA["json_schema"]["schema"])])
def test_ollama_json_mode_is_format(fmt, expected, adapter, client, fake_upstream):
    adapter("ollama").complete(client, request(ASK, response_format=fmt))
    assert sent(fake_upstream)["format"] == expected


@pytest.mark.parametrize(("kind", "fields", "missing"), [
    ("openai", {"logit_bias": {"1": 1}, "seed": 1, "metadata": {"a": "b"}}, ()),
    ("anthropic", {"seed": 1, "logprobs": True, "user": "u"}, ("seed", "logprobs")),
    ("anthropic", {"n": 2}, ("n",)),
    ("ollama", {"n": 3}, ("n",)),
    ("openai_compatible", {"n": 3}, ()),
    ("anthropic", {"messages": [{"role": "user", "content": "hi", "name": "ann"}]},
     ("messages[].name",)),
    ("openai", {"messages": [{"role": "user", "content": "hi", "name": "ann"}]}, ()),
    ("anthropic", {"metadata": {"a": "b"}, "tools": [WEATHER]}, ("metadata",)),
    ("ollama", {"logit_bias": {"1": 1}, "seed": 1}, ("logit_bias",)),
    ("ollama", {"tools": [WEATHER], "tool_choice": "required"}, ("tool_choice",)),
    ("ollama", {"tools": [WEATHER], "tool_choice": "none"}, ()),
    ("ollama", {"parallel_tool_calls": False}, ("parallel_tool_calls",)),
])
def test_each_kind_names_the_fields_it_cannot_carry(kind, fields, missing, adapter):
    assert adapter(kind).unsupported(request(**{"messages": ASK, **fields})) == missing


def test_ollama_cannot_fetch_an_image_url(adapter):
    chat = request([{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://img.test/a.png"}}]}])
    [missing] = adapter("ollama").unsupported(chat)
    assert missing.startswith("image_url")


def test_a_compatible_server_is_asked_for_stream_usage_when_the_caller_asks(
        adapter, client, fake_upstream):
    chat = parse(json.dumps({"messages": ASK, "stream": True,
                             "stream_options": {"include_usage": True}}).encode()).chat
    deltas = list(adapter("openai_compatible").stream(client, chat))
    assert sent(fake_upstream)["stream_options"] == {"include_usage": True}
    assert sum(d.usage.completion_tokens for d in deltas if d.usage) > 0


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_stream_names_the_provider_model_before_its_first_piece(kind, adapter, client):
    deltas = list(adapter(kind).stream(client, request(ASK)))
    first = next(i for i, d in enumerate(deltas) if d.content)
    assert f"{kind}-model" in [d.model for d in deltas[:first + 1]]


@pytest.mark.parametrize("kind", ["openai", "openai_compatible"])
def test_a_refusal_is_an_answer_whole_and_streamed(kind, adapter, client, fake_upstream):
    fake_upstream.set_fault("up", refusal=True)
    completion = adapter(kind).complete(client, request(ASK))
    assert (completion.content, completion.refusal) == ("", "I can't help with that.")
    deltas = list(adapter(kind).stream(client, request(ASK)))
    assert "".join(d.refusal for d in deltas) == "I can't help with that."


def test_an_anthropic_refusal_finishes_as_content_filter(adapter, client, fake_upstream):
    fake_upstream.set_fault("up", refusal=True)
    assert adapter("anthropic").complete(client, request(ASK)).finish_reason == "content_filter"


def test_logprobs_come_back_whole_and_per_streamed_piece(adapter, client):
    chat = request(ASK, logprobs=True, top_logprobs=1)
    completion = adapter("openai").complete(client, chat)
    tokens = [t["token"] for t in completion.logprobs["content"]]
    assert "".join(tokens) == completion.content
    deltas = [d for d in adapter("openai").stream(client, chat) if d.content]
    assert all(d.logprobs["content"][0]["token"] == d.content for d in deltas)


def test_n_answers_come_back_whole_and_streamed(adapter, client, fake_upstream):
    chat = request(ASK, n=3)
    completion = adapter("openai").complete(client, chat)
    assert sent(fake_upstream)["n"] == 3
    assert [c.index for c in completion.more] == [1, 2]
    assert all(c.content == completion.content for c in completion.more)
    deltas = list(adapter("openai").stream(client, chat))
    for index in range(3):
        text = "".join(d.content for d in deltas if d.choice == index)
        assert text == "echo: weather in Paris"
