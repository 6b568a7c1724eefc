"""Streamed lines become events: SSE (multi-line data, comments, event names) and NDJSON."""

import pytest

from flexiai_django.providers.sse import LineDecoder


def feed(decoder, lines):
    return [event for line in lines for event in decoder.feed(line)]


def test_sse_dispatches_on_the_blank_line():
    assert feed(LineDecoder("sse"), ["event: delta", "data: {}", ""]) == [("delta", "{}")]


def test_sse_joins_multi_line_data_and_skips_comments():
    lines = [": keep-alive", "data: a", "data: b", "", ""]
    assert feed(LineDecoder("sse"), lines) == [(None, "a\nb")]


def test_sse_event_name_does_not_leak_into_the_next_event():
    lines = ["event: one", "data: 1", "", "data: 2", ""]
    assert feed(LineDecoder("sse"), lines) == [("one", "1"), (None, "2")]


def test_sse_tolerates_crlf_and_no_space_after_colon():
    assert feed(LineDecoder("sse"), ["data:x\r", "\r"]) == [(None, "x")]


def test_ndjson_is_one_event_per_non_blank_line():
    assert feed(LineDecoder("ndjson"), ['{"a":1}', "", '{"b":2}']) == [
        (None, '{"a":1}'), (None, '{"b":2}')]


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError):
        LineDecoder("xml")
