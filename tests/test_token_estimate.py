"""The request-size estimate the chain uses to skip providers whose window is too small."""

from flexiai_django.chat_types import ChatRequest, Message, Tool, ToolCall
from flexiai_django.token_estimate import (
    CHARS_PER_TOKEN,
    MESSAGE_OVERHEAD,
    needed_tokens,
    prompt_tokens,
)


def test_four_characters_a_token_plus_a_few_a_message():
    request = ChatRequest.build([{"role": "system", "content": "x" * 40},
                                 {"role": "user", "content": "y" * 400}])
    assert prompt_tokens(request) == 440 // CHARS_PER_TOKEN + 2 * MESSAGE_OVERHEAD


def test_the_answer_limit_counts_whichever_name_set_it():
    prompt = ChatRequest.build("z" * 400)
    assert needed_tokens(prompt) == prompt_tokens(prompt)
    assert needed_tokens(ChatRequest.build("z" * 400, max_tokens=1000)) == (
        prompt_tokens(prompt) + 1000)
    assert needed_tokens(ChatRequest.build("z" * 400, max_completion_tokens=70)) == (
        prompt_tokens(prompt) + 70)


def test_tool_definitions_and_tool_calls_in_the_history_count():
    plain = ChatRequest.build("weather?")
    schema = {"type": "object", "properties": {"city": {"type": "string"}} | {
        f"p{i}": {"type": "string", "description": "d" * 40} for i in range(10)}}
    tools = ChatRequest.build("weather?", tools=(Tool("get_weather", "Looks it up.", schema),))
    assert prompt_tokens(tools) > prompt_tokens(plain) + 100
    history = ChatRequest(messages=(
        Message("user", "weather?"),
        Message("assistant", "", tool_calls=(ToolCall("c1", "get_weather", "{}" + " " * 400),)),
        Message("tool", "sunny", tool_call_id="c1")))
    assert prompt_tokens(history) >= 100


def test_an_empty_message_still_costs_its_overhead():
    assert prompt_tokens(ChatRequest.build([{"role": "user", "content": ""}])) == (
        MESSAGE_OVERHEAD)
