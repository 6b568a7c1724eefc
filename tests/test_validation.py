"""The request parser never crashes: any bytes give a request or an InvalidRequest."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flexiai_django.validation import InvalidRequest, parse

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
fields = st.sampled_from(["messages", "model", "temperature", "top_p", "max_tokens", "stop",
                          "stream", "n", "user", "stream_options", "role", "content", "tools",
                          "tool_choice", "parallel_tool_calls", "response_format", "seed",
                          "max_completion_tokens", "presence_penalty", "frequency_penalty",
                          "logit_bias", "logprobs", "top_logprobs", "metadata"])
names = st.sampled_from(["lookup", "get_weather", "bad name", "", 3])
tool_calls = st.lists(st.fixed_dictionaries(
    {"id": st.sampled_from(["call_1", "call_2", "", None]), "type": st.just("function"),
     "function": st.fixed_dictionaries({"name": names,
                                        "arguments": st.sampled_from(['{"q": 1}', "", 5])})}),
    max_size=2)
parts = st.lists(st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=10)}),
    st.fixed_dictionaries({"type": st.just("image_url"), "image_url": st.fixed_dictionaries(
        {"url": st.sampled_from(["https://x.test/a.png", "data:image/png;base64,iVBO",
                                 "data:image/png,raw", "ftp://x", 3]),
         "detail": st.sampled_from(["low", "high", "huge", None])})}),
    json_values), max_size=3)
message = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "developer", "x", 1]),
                           "content": json_values | parts}),
    st.fixed_dictionaries({"role": st.just("assistant"),
                           "content": st.none() | st.text(max_size=10) | parts,
                           "tool_calls": tool_calls | json_values}),
    st.fixed_dictionaries({"role": st.just("tool"), "content": st.text(max_size=10) | parts,
                           "tool_call_id": st.sampled_from(["call_1", "call_9", "", None])}),
)
tools = st.lists(st.one_of(
    st.fixed_dictionaries({"type": st.just("function"), "function": st.fixed_dictionaries(
        {"name": names, "parameters": st.just({"type": "object"}) | json_values,
         "strict": st.booleans() | json_values})}),
    json_values), max_size=3)
options = {
    "tools": tools,
    "tool_choice": st.sampled_from(["auto", "none", "required", "sometimes",
                                    {"type": "function", "function": {"name": "lookup"}}]),
    "response_format": st.sampled_from([{"type": "json_object"}, {"type": "text"},
                                        {"type": "json_schema", "json_schema": {
                                            "name": "answer", "schema": {"type": "object"}}},
                                        {"type": "json_schema"}, {"type": "yaml"}]),
    "logit_bias": st.dictionaries(st.sampled_from(["50256", "x"]), json_values, max_size=2),
    "metadata": st.dictionaries(st.text(max_size=5), json_values, max_size=3),
}
bodies = st.dictionaries(fields, json_values | st.lists(message, max_size=4), max_size=6)
with_options = st.tuples(bodies, st.fixed_dictionaries({}, optional=options)).map(
    lambda pair: {**pair[0], **pair[1]})

def outcome(raw):
    try:
        return parse(raw)
    except InvalidRequest as exc:
        assert exc.status in (400, 413, 422)
        assert exc.message and exc.as_body()["error"]["type"] == "invalid_request_error"
        return exc


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_arbitrary_bytes(raw):
    outcome(raw)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(with_options)
def test_arbitrary_json_objects(body):
    result = outcome(json.dumps(body, allow_nan=True).encode())
    if not isinstance(result, InvalidRequest):
        assert result.chat.messages
        assert all(m.role in {"system", "developer", "user", "assistant", "tool"}
                   for m in result.chat.messages)
        assert result.chat.temperature is None or 0 <= result.chat.temperature <= 2
        called = {c.id for m in result.chat.messages for c in m.tool_calls}
        assert all(m.tool_call_id in called for m in result.chat.messages if m.role == "tool")
        assert {t.name for t in result.chat.tools} >= {
            c.name for c in [result.chat.tool_choice] if c is not None and c.name}


@given(st.lists(st.sampled_from(["user", "assistant", "system"]), min_size=1, max_size=5),
       st.text(max_size=50))
def test_valid_requests_keep_every_message(roles, text):
    body = {"messages": [{"role": r, "content": text} for r in roles]}
    parsed = parse(json.dumps(body).encode())
    assert [(m.role, m.content) for m in parsed.chat.messages] == [(r, text) for r in roles]


AGENT_LOOP = [
    {"role": "developer", "content": "Use the tools."},
    {"role": "user", "content": [
        {"type": "text", "text": "What is in this picture, and the weather there?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=",
                                            "detail": "low"}}]},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
]
FULL = {
    "model": "gpt-4o", "messages": AGENT_LOOP,
    "tools": [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather now",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": True}}],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "parallel_tool_calls": False, "seed": 7, "max_completion_tokens": 50,
    "presence_penalty": 0.5, "frequency_penalty": -0.5, "logit_bias": {"50256": -100},
    "logprobs": True, "top_logprobs": 2, "user": "u-1", "metadata": {"team": "a"}, "n": 2,
    "response_format": {"type": "json_schema", "json_schema": {
        "name": "answer", "strict": True, "schema": {"type": "object"}}},
}


def test_every_field_of_a_tool_conversation_is_parsed_and_rendered_back_as_sent():
    from flexiai_django.providers import openai_shape

    chat = parse(json.dumps(FULL).encode()).chat
    assert [openai_shape.message(m) for m in chat.messages] == AGENT_LOOP
    sent = openai_shape.options(chat)
    for name in ("tools", "tool_choice", "parallel_tool_calls", "seed", "max_completion_tokens",
                 "presence_penalty", "frequency_penalty", "logit_bias", "logprobs",
                 "top_logprobs", "user", "metadata", "response_format", "n"):
        assert sent[name] == FULL[name], name
    assert chat.messages[1].images[0].data == ("image/png", "iVBORw0KGgo=")
    assert chat.token_limit == 50


BAD_FIELDS = [
    ({"tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools[0].function.name"),
    ({"tools": [{"type": "retrieval"}]}, "tools[0]"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tool_choice": "maybe"}, "tool_choice"),
    ({"response_format": {"type": "yaml"}}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
     "response_format.json_schema.name"),
    ({"seed": 1.5}, "seed"),
    ({"n": 0}, "n"),
    ({"n": 129}, "n"),
    ({"n": True}, "n"),
    ({"presence_penalty": 3}, "presence_penalty"),
    ({"logit_bias": {"the": 5}}, "logit_bias"),
    ({"top_logprobs": 3}, "top_logprobs"),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ({"metadata": {"a": 1}}, "metadata"),
    ({"max_completion_tokens": 0}, "max_completion_tokens"),
    ({"parallel_tool_calls": "no"}, "parallel_tool_calls"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
    ({"messages": [{"role": "tool", "tool_call_id": "call_9", "content": "x"}]},
     "messages[0].tool_call_id"),
    ({"messages": [{"role": "assistant", "content": None, "tool_calls": [{"id": "c"}]}]},
     "messages[0].tool_calls[0]"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]}]},
     "messages[0].content[0]"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png,notbase64"}}]}]},
     "messages[0].content[0]"),
    ({"messages": [{"role": "system", "content": [
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]}]}, "messages[0]"),
]


@pytest.mark.parametrize(("fields", "param"), BAD_FIELDS)
def test_a_bad_new_field_is_named(fields, param):
    body = {"messages": [{"role": "user", "content": "hi"}], **fields}
    with pytest.raises(InvalidRequest) as caught:
        parse(json.dumps(body).encode())
    assert caught.value.param == param
    assert caught.value.status == 400
