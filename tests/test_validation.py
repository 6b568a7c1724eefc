"""The request parser never crashes: any bytes give a request or an InvalidRequest."""

import json

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
                          "stream", "n", "user", "stream_options", "role", "content"])
message = st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "x", 1]),
                                 "content": json_values})
bodies = st.dictionaries(fields, json_values | st.lists(message, max_size=3), max_size=6)


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


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(bodies)
def test_arbitrary_json_objects(body):
    result = outcome(json.dumps(body, allow_nan=True).encode())
    if not isinstance(result, InvalidRequest):
        assert result.chat.messages
        assert all(m.role in {"system", "developer", "user", "assistant", "tool"}
                   for m in result.chat.messages)
        assert result.chat.temperature is None or 0 <= result.chat.temperature <= 2


@given(st.lists(st.sampled_from(["user", "assistant", "system"]), min_size=1, max_size=5),
       st.text(max_size=50))
def test_valid_requests_keep_every_message(roles, text):
    body = {"messages": [{"role": r, "content": text} for r in roles]}
    parsed = parse(json.dumps(body).encode())
    assert [(m.role, m.content) for m in parsed.chat.messages] == [(r, text) for r in roles]
