"""The pure translations: what a conversation becomes for Anthropic and Ollama."""

import json

from flexiai_django.providers import translate_anthropic, translate_ollama
from flexiai_django.validation import parse


def request(messages, **fields):
    return parse(json.dumps({"messages": messages, **fields}).encode()).chat


TWO_CALLS = [
    {"role": "user", "content": "compare"},
    {"role": "assistant", "content": "Looking.", "tool_calls": [
        {"id": "call.a/1", "type": "function", "function": {"name": "f", "arguments": "[1]"}},
        {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": "oops"}}]},
    {"role": "tool", "tool_call_id": "call.a/1", "content": "one"},
    {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "two"}]},
    {"role": "user", "content": "so?"},
]


def test_anthropic_merges_tool_results_into_one_user_turn_with_safe_ids():
    turns = translate_anthropic.messages(request(TWO_CALLS))
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[1]["content"] == [
        {"type": "text", "text": "Looking."},
        {"type": "tool_use", "id": "call_a_1", "name": "f", "input": {"value": [1]}},
        {"type": "tool_use", "id": "call_b", "name": "g", "input": {"arguments": "oops"}}]
    assert turns[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_a_1", "content": "one"},
        {"type": "tool_result", "tool_use_id": "call_b", "content": "two"},
        {"type": "text", "text": "so?"}]


def test_anthropic_stop_reasons_become_openai_finish_reasons():
    assert [translate_anthropic.finish_reason(r) for r in
            ("end_turn", "max_tokens", "tool_use", "refusal", "stop_sequence")] == [
        "stop", "length", "tool_calls", "content_filter", "stop"]


def test_anthropic_tool_choice_none_and_serial_calls():
    tools = [{"type": "function", "function": {"name": "f"}}]
    body = translate_anthropic.payload(request(TWO_CALLS[:1], tools=tools, tool_choice="none"),
                                       "m", stream=False)
    assert body["tool_choice"] == {"type": "none"}
    body = translate_anthropic.payload(request(TWO_CALLS[:1], tools=tools,
                                               parallel_tool_calls=False), "m", stream=False)
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert body["tools"] == [{"name": "f", "input_schema": {"type": "object"}}]


def test_anthropic_json_schema_with_tools_is_asked_for_in_the_system_prompt():
    tools = [{"type": "function", "function": {"name": "f"}}]
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "array"}}}
    body = translate_anthropic.payload(request(TWO_CALLS[:1], tools=tools,
                                               response_format=fmt), "m", stream=False)
    assert [t["name"] for t in body["tools"]] == ["f"]
    assert body["system"].endswith('JSON Schema: {"type":"array"}')


def test_anthropic_stream_events_become_incremental_tool_call_deltas():
    events = [
        {"type": "message_start", "message": {"model": "claude-x", "usage": {"input_tokens": 5}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hm"}},
        {"type": "content_block_start", "index": 1,
         "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}},
        {"type": "content_block_delta", "index": 1,
         "delta": {"type": "input_json_delta", "partial_json": '{"a":'}},
        {"type": "content_block_delta", "index": 1,
         "delta": {"type": "input_json_delta", "partial_json": " 1}"}},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
         "usage": {"output_tokens": 7}},
        {"type": "message_stop"},
    ]
    parse_event = translate_anthropic.StreamTranslator(json_answer=False)
    deltas = [d for d in (parse_event(None, json.dumps(e)) for e in events) if d]
    assert deltas[0].model == "claude-x"
    calls = [c for d in deltas for c in d.tool_calls]
    assert [(c.index, c.id, c.name, c.arguments) for c in calls] == [
        (0, "toolu_1", "f", ""), (0, None, None, '{"a":'), (0, None, None, " 1}")]
    assert deltas[-2].finish_reason == "tool_calls" and deltas[-1].final


def test_ollama_developer_is_system_and_tool_choice_none_sends_no_tools():
    tools = [{"type": "function", "function": {"name": "f"}}]
    body = translate_ollama.payload(request([{"role": "developer", "content": "d"},
                                             {"role": "user", "content": "u"}],
                                            tools=tools, tool_choice="none"), "m", stream=True)
    assert body["messages"][0] == {"role": "system", "content": "d"}
    assert "tools" not in body


def test_ollama_streamed_calls_are_numbered_across_lines():
    parse_event = translate_ollama.StreamTranslator()
    line = {"message": {"content": "", "tool_calls": [
        {"function": {"name": "f", "arguments": {"a": 1}}}]}, "done": False}
    first, second = parse_event(None, json.dumps(line)), parse_event(None, json.dumps(line))
    assert [c.index for c in first.tool_calls + second.tool_calls] == [0, 1]
    assert first.tool_calls[0].arguments == '{"a":1}'
    done = parse_event(None, json.dumps({"message": {"content": ""}, "done": True,
                                         "done_reason": "stop"}))
    assert done.final and done.finish_reason == "tool_calls"
