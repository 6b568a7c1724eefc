"""OpenTelemetry spans (FLEXIAI["TRACING"]): one request span, one child span per provider
attempt, GenAI attribute names, no secrets; none at all when off. Real chain, fake upstream,
the SDK's in-memory exporter behind a tracer provider of the test's own (never the global)."""

import pytest
from django.test import override_settings
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import flexiai_django
from flexiai_django import tracing

pytestmark = pytest.mark.django_db

HELLO = [{"role": "user", "content": "a secret prompt"}]
KEY = "sk-tracing-test-key-do-not-leak"
FLEXIAI = {"TRACING": True, "DEGRADED_MESSAGE": None, "CACHE_ENABLED": False,
           "BREAKER_STORE": {"BACKEND": "flexiai_django.breakers.memory.LocalBreakerStore",
                             "OPTIONS": {}}}


@pytest.fixture
def spans():
    """The finished spans of this test, from a tracer provider set here and restored after."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    before, tracing.tracer_provider = tracing.tracer_provider, provider
    try:
        yield exporter
    finally:
        tracing.tracer_provider = before
        provider.shutdown()


@pytest.fixture
def two(make_provider):
    """Made in a sync fixture: the ORM refuses an async test's event loop."""
    return (make_provider("primary", priority=1, api_key=KEY),
            make_provider("secondary", priority=2, api_key=KEY))


def split(exporter):
    finished = exporter.get_finished_spans()
    requests = [s for s in finished if "flexiai.streamed" in s.attributes]
    attempts = sorted((s for s in finished if "flexiai.attempt.outcome" in s.attributes),
                      key=lambda s: s.start_time)
    return requests, attempts


def test_a_plain_call_makes_a_request_span_with_one_child_attempt(spans, make_provider):
    make_provider("primary", priority=1, api_key=KEY)
    with override_settings(FLEXIAI=FLEXIAI):
        result = flexiai_django.chat(HELLO)
    assert result.provider == "primary"
    (request,), (attempt,) = split(spans)
    assert attempt.parent is not None and attempt.parent.span_id == request.context.span_id
    assert attempt.context.trace_id == request.context.trace_id
    assert attempt.attributes["gen_ai.operation.name"] == "chat"
    assert attempt.attributes["gen_ai.provider.name"] == "openai"
    assert attempt.attributes["flexiai.provider"] == "primary"
    assert attempt.attributes["gen_ai.request.model"] == "primary-model"
    assert attempt.attributes["gen_ai.response.model"] == result.model
    assert attempt.attributes["gen_ai.usage.input_tokens"] == result.usage.prompt_tokens
    assert attempt.attributes["gen_ai.usage.output_tokens"] == result.usage.completion_tokens
    assert result.usage.completion_tokens > 0
    assert attempt.attributes["flexiai.attempt.outcome"] == "ok"
    assert request.attributes["flexiai.tier"] == "provider"
    assert request.attributes["flexiai.fallback"] is False
    assert request.attributes["flexiai.provider"] == "primary"


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_failover_makes_two_attempt_spans_and_names_who_served(spans, two,
                                                                       fake_upstream):
    fake_upstream.set_fault("primary", status=500)
    with override_settings(FLEXIAI=FLEXIAI):
        result = await flexiai_django.achat(HELLO)
    assert result.provider == "secondary"
    (request,), attempts = split(spans)
    assert [(s.attributes["flexiai.provider"], s.attributes["flexiai.attempt.outcome"])
            for s in attempts] == [("primary", "server_error"), ("secondary", "ok")]
    assert attempts[0].attributes["error.type"] == "server_error"
    assert all(s.parent.span_id == request.context.span_id for s in attempts)
    assert request.attributes["flexiai.provider"] == "secondary"
    assert request.attributes["flexiai.attempts"] == 2
    assert "error.type" not in request.attributes


def test_a_fallback_to_the_degraded_tier_says_so(spans, make_provider, fake_upstream):
    make_provider("primary", priority=1, api_key=KEY)
    fake_upstream.set_fault("primary", status=500)
    with override_settings(FLEXIAI={**FLEXIAI, "DEGRADED_MESSAGE": "down for now"}):
        result = flexiai_django.chat(HELLO)
    assert result.tier == "degraded"
    (request,), (attempt,) = split(spans)
    assert request.attributes["flexiai.tier"] == "degraded"
    assert request.attributes["flexiai.fallback"] is True
    assert attempt.attributes["flexiai.attempt.outcome"] == "server_error"


def test_tracing_off_makes_no_span(spans, make_provider):
    make_provider("primary", priority=1, api_key=KEY)
    with override_settings(FLEXIAI={**FLEXIAI, "TRACING": False}):
        assert flexiai_django.chat(HELLO).provider == "primary"
    assert spans.get_finished_spans() == ()


def test_no_span_carries_a_key_a_prompt_or_an_answer(spans, make_provider, fake_upstream):
    make_provider("primary", priority=1, api_key=KEY)
    make_provider("secondary", priority=2, api_key=KEY)
    fake_upstream.set_fault("primary", status=500)
    with override_settings(FLEXIAI=FLEXIAI):
        answer = flexiai_django.chat(HELLO).content
    finished = spans.get_finished_spans()
    assert finished
    for span in finished:
        text = repr(dict(span.attributes)) + span.name + repr(span.events)
        for secret in (KEY, "secret prompt", answer):
            assert secret not in text


def test_a_stream_span_ends_with_the_stream_and_parents_its_attempts(spans, make_provider,
                                                                     fake_upstream):
    make_provider("primary", priority=1, api_key=KEY)
    make_provider("secondary", priority=2, api_key=KEY)
    fake_upstream.set_fault("primary", status=500)
    with override_settings(FLEXIAI=FLEXIAI):
        stream = flexiai_django.stream(HELLO)
        assert split(spans)[0] == []  # open until the stream ends
        text = "".join(stream)
    assert text.startswith("secondary: ")
    (request,), attempts = split(spans)
    assert request.attributes["flexiai.streamed"] is True
    assert request.attributes["flexiai.provider"] == "secondary"
    assert request.attributes["flexiai.tier"] == "provider"
    assert [s.attributes["flexiai.attempt.outcome"] for s in attempts] == ["server_error", "ok"]
    assert all(s.parent.span_id == request.context.span_id for s in attempts)
    assert request.end_time >= attempts[-1].end_time


def test_a_stream_left_mid_way_ends_its_spans_as_aborted(spans, make_provider):
    make_provider("primary", priority=1, api_key=KEY)
    with override_settings(FLEXIAI=FLEXIAI):
        pieces = flexiai_django.stream(HELLO).deltas()
        next(pieces)
        pieces.close()
    (request,), (attempt,) = split(spans)
    assert attempt.attributes["flexiai.attempt.outcome"] == "aborted"
    assert request.attributes["error.type"] == "aborted"


def test_a_continued_stream_says_so_and_ends_the_broken_attempt(spans, make_provider,
                                                                fake_upstream):
    make_provider("primary", priority=1, api_key=KEY)
    make_provider("secondary", priority=2, api_key=KEY)
    for name in ("primary", "secondary"):
        fake_upstream.set_reply_prefix(name, "echo: ")
    fake_upstream.set_fault("primary", stream_fail_after=3)
    with override_settings(FLEXIAI={**FLEXIAI, "CONTINUE_STREAMS": True}):
        stream = flexiai_django.stream([{"role": "user", "content": "one two three four"}])
        assert "".join(stream) == "echo: one two three four"
    (request,), attempts = split(spans)
    assert [s.attributes["flexiai.attempt.outcome"] for s in attempts] == [
        "stream_interrupted", "ok"]
    assert request.attributes["flexiai.continued"] is True
    assert request.attributes["flexiai.provider"] == "secondary"


@pytest.mark.django_db(transaction=True)
def test_the_http_api_traces_a_request_and_its_attempt(spans, make_provider, client):
    make_provider("primary", priority=1, api_key=KEY)
    with override_settings(FLEXIAI={**FLEXIAI, "ALLOW_ANONYMOUS_LOOPBACK": True}):
        response = client.post("/v1/chat/completions", {"messages": HELLO},
                               content_type="application/json")
    assert response.status_code == 200
    (request,), (attempt,) = split(spans)
    assert attempt.parent.span_id == request.context.span_id
    assert request.attributes["flexiai.provider"] == "primary"
    assert attempt.attributes["flexiai.attempt.outcome"] == "ok"


def test_without_opentelemetry_installed_tracing_on_makes_no_span(spans, make_provider,
                                                                  monkeypatch):
    monkeypatch.setattr(tracing, "_trace", None)  # what a failed import leaves
    make_provider("primary", priority=1, api_key=KEY)
    with override_settings(FLEXIAI=FLEXIAI):
        assert flexiai_django.chat(HELLO).provider == "primary"
        assert "".join(flexiai_django.stream(HELLO)).startswith("primary: ")
    assert spans.get_finished_spans() == ()
