"""The chain with the healing limits: a late first token or a stall, and a window too small.

Real providers on the fake upstream, the Redis breaker store of the test settings.
"""

import time

import pytest

import flexiai_django
from flexiai_django import cache_tier
from flexiai_django.breakers import get_store
from flexiai_django.chat_types import ChatRequest, Completion
from flexiai_django.errors import ContextLengthExceeded, StreamInterrupted

pytestmark = pytest.mark.django_db

HELLO = [{"role": "user", "content": "hello"}]
#: 400 words, about 600 estimated tokens: too long for a 100-token window, not for 4000.
LONG = [{"role": "user", "content": "lorem ipsum " * 200}]


def failures(name):
    return get_store().get(f"llm:{name}").failures


@pytest.fixture
def slow_first(make_provider, fake_upstream):
    """A primary whose first token comes after 8 s, with a 10 s timeout but a 0.5 s
    first-token limit; a healthy secondary."""
    make_provider("primary", priority=1, timeout=10, first_token_timeout=0.5)
    make_provider("secondary", priority=2, timeout=10)
    fake_upstream.set_fault("primary", first_token_delay=8)


def test_a_stream_fails_over_by_its_first_token_limit(slow_first, fake_upstream):
    started = time.monotonic()
    stream = flexiai_django.stream(HELLO)
    text = "".join(stream)
    assert time.monotonic() - started < 3
    assert (stream.provider, text) == ("secondary", "secondary: hello")
    assert [(a.provider, a.outcome) for a in stream.result.trail] == [
        ("primary", "first_token_timeout"), ("secondary", "ok")]
    assert failures("primary") == 1 and fake_upstream.hits("primary") == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_an_async_stream_fails_over_by_its_first_token_limit(slow_first, fake_upstream):
    started = time.monotonic()
    stream = await flexiai_django.astream(HELLO)
    text = "".join([piece async for piece in stream])
    assert time.monotonic() - started < 3
    assert (stream.provider, text) == ("secondary", "secondary: hello")
    assert stream.result.trail[0].outcome == "first_token_timeout"


def test_a_plain_call_waits_for_a_slow_whole_answer(make_provider, fake_upstream):
    """The limit is for streams: a plain answer only arrives when it is all written."""
    make_provider("primary", priority=1, timeout=10, first_token_timeout=0.2)
    make_provider("secondary", priority=2)
    fake_upstream.set_fault("primary", first_token_delay=0.4)
    assert flexiai_django.chat(HELLO).provider == "primary"


@pytest.fixture
def stalling(make_provider, fake_upstream, settings):
    """A primary that goes silent after its first piece; continuation off, so the stream
    ends there."""
    settings.FLEXIAI = {**settings.FLEXIAI, "CONTINUE_STREAMS": False}
    make_provider("primary", priority=1, timeout=10, stall_timeout=0.3)
    fake_upstream.set_fault("primary", stall_after=1, stall_for=8)


def test_a_stall_mid_stream_reaches_the_chain_as_a_provider_failure(stalling):
    """Cut within the stall limit, not the provider's timeout: a breaker failure."""
    pieces, started = [], time.monotonic()
    stream = flexiai_django.stream(HELLO)
    with pytest.raises(StreamInterrupted) as caught:
        pieces.extend(stream)
    assert time.monotonic() - started < 3
    assert pieces == ["primary: "]
    assert "stalled" in str(caught.value)
    assert failures("primary") == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_an_async_stall_mid_stream_reaches_the_chain_too(stalling):
    pieces, started = [], time.monotonic()
    stream = await flexiai_django.astream(HELLO)
    with pytest.raises(StreamInterrupted) as caught:
        async for piece in stream:
            pieces.append(piece)
    assert time.monotonic() - started < 3
    assert pieces == ["primary: "] and "stalled" in str(caught.value)


# -- the context window ------------------------------------------------------------------


@pytest.fixture
def windows(make_provider):
    """A small-window primary and a large-window secondary."""
    make_provider("primary", priority=1, context_window=100)
    make_provider("secondary", priority=2, context_window=4000)


def test_a_request_too_long_for_a_window_skips_it_unsent_and_untripped(windows, fake_upstream):
    result = flexiai_django.chat(LONG)
    assert result.provider == "secondary" and result.attempts == 1
    assert [(a.provider, a.outcome) for a in result.trail] == [
        ("primary", "too_long"), ("secondary", "ok")]
    assert fake_upstream.hits("primary") == 0
    assert failures("primary") == 0
    assert flexiai_django.chat(HELLO).provider == "primary"  # a short one still fits


def test_max_tokens_counts_against_the_window(windows, fake_upstream):
    assert flexiai_django.chat(HELLO, max_tokens=200).provider == "secondary"
    assert fake_upstream.hits("primary") == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_stream_skips_a_window_too_small_too(windows, fake_upstream):
    stream = await flexiai_django.astream(LONG)
    assert stream.provider == "secondary"
    assert "".join([piece async for piece in stream]).startswith("secondary: lorem")
    assert fake_upstream.hits("primary") == 0


def test_a_window_that_seems_to_fit_but_is_refused_still_fails_over(make_provider,
                                                                   fake_upstream):
    """The estimate leans low; the provider's own "too long" has the last word, without a
    trip, and the next window up (by estimate) is skipped unsent."""
    make_provider("primary", priority=1, context_window=1000)
    make_provider("middle", priority=2, context_window=100)
    make_provider("secondary", priority=3, context_window=100_000)
    fake_upstream.set_fault("primary", context_window=300)  # counts words: 400 > 300
    result = flexiai_django.chat(LONG)
    assert result.provider == "secondary"
    assert [a.outcome for a in result.trail] == ["context_length_exceeded", "too_long", "ok"]
    assert fake_upstream.hits("primary") == 1 and fake_upstream.hits("middle") == 0
    assert failures("primary") == 0


@pytest.mark.parametrize("refused_by_primary", [False, True])
def test_too_long_for_every_window_is_a_context_length_error_not_a_fallback(
        refused_by_primary, make_provider, fake_upstream, settings):
    """Not the degraded message, and not a cached answer to the same request either."""
    make_provider("primary", priority=1, context_window=None if refused_by_primary else 100)
    make_provider("secondary", priority=2, context_window=100)
    fake_upstream.set_fault("primary", context_window=300)
    cache_tier.remember(ChatRequest.build(LONG), "primary", Completion("an old answer", "m"))
    settings.FLEXIAI = {**settings.FLEXIAI, "DEGRADED_MESSAGE": "Later.", "CACHE_ENABLED": True}
    with pytest.raises(ContextLengthExceeded) as caught:
        flexiai_django.chat(LONG)
    assert fake_upstream.hits("secondary") == 0
    if not refused_by_primary:
        assert "tokens" in caught.value.message and fake_upstream.hits("primary") == 0


def test_too_long_here_and_down_there_is_an_outage_not_a_400(windows, fake_upstream,
                                                             settings):
    settings.FLEXIAI = {**settings.FLEXIAI, "DEGRADED_MESSAGE": "Later."}
    fake_upstream.set_fault("secondary", status=503)
    assert flexiai_django.chat(LONG).tier == "degraded"


def test_a_content_filter_refusal_still_goes_back_to_the_caller(windows, fake_upstream):
    fake_upstream.set_fault("primary", refusal=True)
    result = flexiai_django.chat(HELLO)
    assert result.provider == "primary" and result.refusal
    assert fake_upstream.hits("secondary") == 0


# -- garbled streams ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["openai", "anthropic", "ollama"])
def test_a_wholly_garbled_stream_still_fails_over_before_its_first_token(kind, make_provider,
                                                                        fake_upstream):
    make_provider("primary", kind=kind, priority=1)
    make_provider("secondary", priority=2)
    fake_upstream.set_fault("primary", malformed=True)
    stream = flexiai_django.stream(HELLO)
    assert "".join(stream) == "secondary: hello"
    assert stream.result.trail[0].outcome == "malformed_reply"
    assert failures("primary") == 1


def test_one_garbled_chunk_is_not_a_failure(make_provider, fake_upstream):
    make_provider("primary", kind="anthropic", priority=1)
    fake_upstream.set_fault("primary", malformed_chunk_at=1)
    stream = flexiai_django.stream(HELLO)
    assert "".join(stream) == "primary: hello"
    assert failures("primary") == 0
