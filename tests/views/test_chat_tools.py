"""POST /v1/chat/completions with tools, JSON mode and fields a provider cannot carry;
upstream refusals passed on with honest statuses. In-process, against the fake upstream."""

import json

import pytest

from flexiai_django.breakers import get_store
from flexiai_django.testing.keys import bearer

pytestmark = pytest.mark.django_db(transaction=True)
URL = "/v1/chat/completions"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object",
                                          "properties": {"city": {"type": "string"}}}}}
ASK = [{"role": "developer", "content": "Use tools."},
       {"role": "user", "content": "weather in Paris"}]
CALL = {"id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
ANSWERED = [*ASK, {"role": "assistant", "content": None, "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]


@pytest.fixture
def client(client, api_token):
    client.defaults.update(bearer(api_token))
    return client


def post(client, body):
    return client.post(URL, json.dumps(body), content_type="application/json")


@pytest.fixture
def mixed(make_provider):
    """An OpenAI-compatible primary and an Anthropic fallback."""
    make_provider("primary", kind="openai_compatible", priority=1)
    make_provider("secondary", kind="anthropic", priority=2)


def test_a_tool_call_answer_is_a_success_with_null_content(client, mixed, fake_upstream):
    for _ in range(6):  # more than the failure threshold: a tool call never trips anything
        response = post(client, {"messages": ASK, "tools": [WEATHER]})
        assert response.status_code == 200
        assert response["X-FlexiAI-Provider"] == "primary"
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"text": "weather in Paris"}
    assert get_store().snapshot("llm:primary").state.value == "closed"


def test_a_tool_conversation_fails_over_from_openai_kind_to_anthropic(client, mixed,
                                                                       fake_upstream):
    fake_upstream.set_fault("primary", status=503)
    response = post(client, {"messages": ANSWERED, "tools": [WEATHER]})
    assert response.status_code == 200
    assert response["X-FlexiAI-Provider"] == "secondary"
    assert response.json()["choices"][0]["message"]["content"] == "secondary: tool said: sunny"
    sent = fake_upstream.requests("secondary")[-1].json
    assert sent["messages"][1]["content"][0]["type"] == "tool_use"
    assert sent["messages"][2]["content"][0] == {"type": "tool_result", "tool_use_id": "call_1",
                                                 "content": "sunny"}


def test_a_tool_conversation_fails_over_from_anthropic_to_openai_kind(client, make_provider,
                                                                       fake_upstream):
    make_provider("claude", kind="anthropic", priority=1)
    make_provider("gpt", kind="openai", priority=2)
    first = post(client, {"messages": ASK, "tools": [WEATHER]}).json()["choices"][0]["message"]
    assert first["tool_calls"][0]["id"].startswith("toolu_")
    fake_upstream.set_fault("claude", status=529)
    history = [*ASK, first, {"role": "tool", "tool_call_id": first["tool_calls"][0]["id"],
                             "content": "rain"}]
    response = post(client, {"messages": history, "tools": [WEATHER]})
    assert response["X-FlexiAI-Provider"] == "gpt"
    assert response.json()["choices"][0]["message"]["content"] == "gpt: tool said: rain"
    assert fake_upstream.requests("gpt")[-1].json["messages"][2]["tool_calls"] == (
        first["tool_calls"])


def test_a_field_no_provider_can_carry_is_a_400_naming_field_and_provider(client, make_provider,
                                                                         fake_upstream):
    make_provider("claude", kind="anthropic")
    response = post(client, {"messages": ASK, "logit_bias": {"50256": -100}})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unsupported_parameter" and error["param"] == "logit_bias"
    assert "'claude'" in error["message"] and "'logit_bias'" in error["message"]
    assert fake_upstream.hits("claude") == 0


def test_a_provider_that_cannot_carry_a_field_is_passed_over(client, make_provider,
                                                             fake_upstream):
    make_provider("claude", kind="anthropic", priority=1)
    make_provider("gpt", kind="openai", priority=2)
    response = post(client, {"messages": ASK, "seed": 7})
    assert response["X-FlexiAI-Provider"] == "gpt"
    assert fake_upstream.hits("claude") == 0
    assert fake_upstream.requests("gpt")[-1].json["seed"] == 7


def test_dropping_is_opt_in_and_named_in_a_header(client, make_provider, fake_upstream,
                                                  settings):
    make_provider("claude", kind="anthropic")
    settings.FLEXIAI = {**settings.FLEXIAI, "DROP_UNSUPPORTED_PARAMS": True}
    response = post(client, {"messages": ASK, "seed": 7, "logprobs": True})
    assert response.status_code == 200
    assert response["X-FlexiAI-Dropped-Params"] == "seed, logprobs"
    assert "seed" not in fake_upstream.requests("claude")[-1].json


def test_advisory_fields_are_dropped_with_a_header_without_opting_in(client, make_provider,
                                                                     fake_upstream):
    make_provider("local", kind="ollama")
    response = post(client, {"messages": ASK, "user": "u-1", "metadata": {"team": "a"}})
    assert response.status_code == 200
    assert response["X-FlexiAI-Dropped-Params"] == "metadata, user"
    named = [{"role": "user", "content": "hi", "name": "ann"}]
    response = post(client, {"messages": named})
    assert response["X-FlexiAI-Dropped-Params"] == "messages[].name"


@pytest.mark.parametrize("status", [413, 422])
def test_an_upstream_413_or_422_reaches_the_client_as_itself(status, client, mixed,
                                                             fake_upstream):
    fake_upstream.set_fault("primary", status=status)
    response = post(client, {"messages": ASK})
    assert response.status_code == status
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert fake_upstream.hits("secondary") == 0


def test_a_context_length_refusal_fails_over_without_a_trip(client, mixed, fake_upstream):
    fake_upstream.set_fault("primary", too_long=True)
    for _ in range(6):
        response = post(client, {"messages": ASK})
        assert response["X-FlexiAI-Provider"] == "secondary"
    assert fake_upstream.hits("primary") == 6  # never skipped: its breaker stayed closed


def test_too_long_for_every_window_is_a_400_not_a_degraded_answer(client, mixed,
                                                                   fake_upstream, settings):
    settings.FLEXIAI = {**settings.FLEXIAI, "DEGRADED_MESSAGE": "Later."}
    fake_upstream.set_fault("primary", too_long=True)
    fake_upstream.set_fault("secondary", too_long=True)
    response = post(client, {"messages": ASK})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded" and error["param"] == "messages"


def test_json_mode_reaches_an_openai_kind_as_sent(client, mixed, fake_upstream):
    fmt = {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}}
    post(client, {"messages": ASK, "response_format": fmt})
    assert fake_upstream.requests("primary")[-1].json["response_format"] == fmt
