"""A stream's events and time limits, decided without I/O: lines in, deltas and verdicts out."""

import pytest

from flexiai_django import metrics
from flexiai_django.chat_types import StreamDelta, ToolCallDelta
from flexiai_django.errors import (
    FirstTokenTimeout,
    MalformedReply,
    StreamStalled,
    UpstreamConnectionError,
)
from flexiai_django.providers.base import ProviderConfig
from flexiai_django.providers.openai import OpenAIAdapter
from flexiai_django.providers.stream_clock import StreamClock
from flexiai_django.providers.stream_events import MAX_MALFORMED, StreamEvents

PARSE = OpenAIAdapter(ProviderConfig("p", "openai", "", "m")).parse_event
PIECE = 'data: {"choices": [{"index": 0, "delta": {"content": "%s"}}]}'
FINISH = 'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}'
GARBLED = 'data: {"choices": [{"delta": {"content": ###'
DONE = "data: [DONE]"


def read(*frames):
    """Feed SSE frames; the deltas given, and the end's verdict (a delta or an error)."""
    events = StreamEvents("p", "sse", PARSE)
    deltas = []
    for frame in frames:
        for line in (frame, ""):
            deltas.extend(events.feed(line))
    return deltas, events


def skipped(provider="p"):
    return metrics.MALFORMED_CHUNKS.labels(provider)._value.get()


def test_one_garbled_event_among_good_ones_is_skipped_and_counted():
    before = skipped()
    deltas, events = read(PIECE % "a", GARBLED, PIECE % "b", FINISH, DONE)
    assert "".join(d.content for d in deltas) == "ab"
    assert events.end().final
    assert skipped() == before + 1


def test_more_than_a_few_garbled_events_break_the_stream():
    frames = [PIECE % "a"] + [GARBLED, PIECE % "b"] * MAX_MALFORMED
    deltas, events = read(*frames, FINISH, DONE)
    assert "".join(d.content for d in deltas) == "a" + "b" * MAX_MALFORMED
    assert events.end().final
    with pytest.raises(MalformedReply):
        read(*frames, GARBLED)


@pytest.mark.parametrize("end", [[DONE], []])
def test_a_stream_ending_on_a_garbled_event_before_its_finish_is_malformed(end):
    _, events = read(PIECE % "a", GARBLED, *end)
    with pytest.raises(MalformedReply):
        events.end()


def test_a_garbled_event_after_the_finish_costs_nothing_but_the_count():
    _, events = read(PIECE % "a", FINISH, GARBLED, DONE)
    assert events.end().final


def test_a_wholly_garbled_stream_fails_before_any_delta():
    deltas, events = read(GARBLED, DONE)
    assert deltas == []
    with pytest.raises(MalformedReply):
        events.end()


def test_an_error_event_is_never_skipped():
    with pytest.raises(MalformedReply):
        read(PIECE % "a", 'data: {"error": {"message": "overloaded"}}')


def test_a_stream_cut_before_its_finish_is_still_truncated():
    _, events = read(PIECE % "a")
    with pytest.raises(UpstreamConnectionError):
        events.end()


# -- the clock ---------------------------------------------------------------------------


def clock(first_token=0.5, stall=2.0, timeout=30.0):
    return StreamClock(timeout=timeout, first_token=first_token, stall=stall, now=100.0)


def test_until_the_first_token_the_wait_runs_from_the_start():
    c = clock()
    assert c.wait(100.0) == 0.5 and c.limited
    c.heard(StreamDelta(model="m"))  # a role header or usage is not the first token
    c.resumed(100.3)
    assert c.wait(100.3) == pytest.approx(0.2)
    assert not c.expired(100.49) and c.expired(100.5)
    assert isinstance(c.error("p"), FirstTokenTimeout)
    assert c.error("p").kind == "first_token_timeout" and c.error("p").trips_breaker


def test_after_the_first_token_each_wait_gets_the_stall_limit_from_when_it_starts():
    c = clock()
    c.heard(StreamDelta(content="hi"))
    c.resumed(100.4)  # the caller took its time with the piece: not the upstream's silence
    assert c.wait(105.0) == pytest.approx(0.001) and c.expired(102.4)
    c.resumed(110.0)
    assert not c.expired(111.9) and c.wait(110.0) == 2.0
    assert isinstance(c.error("p"), StreamStalled) and c.error("p").kind == "stalled"


@pytest.mark.parametrize("delta", [StreamDelta(refusal="no"),
                                   StreamDelta(tool_calls=(ToolCallDelta(0, "c", "f"),))])
def test_a_refusal_or_a_tool_call_piece_is_a_first_token(delta):
    c = clock()
    c.heard(delta)
    c.resumed(100.1)
    assert c.wait(100.1) == 2.0


def test_limits_off_leave_the_provider_timeout():
    c = clock(first_token=None, stall=None, timeout=7.0)
    assert c.wait(100.0) == 7.0 and not c.limited and not c.expired(1e9)
    c.heard(StreamDelta(content="x"))
    c.resumed(101.0)
    assert c.wait(101.0) == 7.0 and not c.expired(1e9)


def test_a_limit_longer_than_the_timeout_leaves_the_timeout_to_speak():
    c = clock(first_token=60.0, timeout=5.0)
    assert c.wait(100.0) == 5.0 and not c.limited


def test_after_the_end_marker_only_the_timeout_applies():
    c = clock()
    c.done()
    assert c.wait(1000.0) == 30.0 and not c.expired(1000.0)
