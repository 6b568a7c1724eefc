"""The fallback chain as a caller sees it: real providers on a real HTTP upstream."""

import pytest
from django.conf import settings
from django.test import override_settings

import flexiai_django
from flexiai_django import cache_tier
from flexiai_django.breakers import get_store
from flexiai_django.breakers.state import State
from flexiai_django.testing.clock import FakeClock

pytestmark = pytest.mark.django_db

HELLO = [{"role": "user", "content": "hello"}]


def breaker_of(name):
    return get_store().get(f"llm:{name}")


STORES = {
    "local": "flexiai_django.breakers.memory.LocalBreakerStore",
    "redis": "flexiai_django.breakers.redis_store.RedisBreakerStore",
}


@pytest.fixture(params=sorted(STORES))
def clock(request):
    """The chain runs against both stores, with time under the test's control."""
    clock = FakeClock()
    flexiai = {
        "FAILURE_THRESHOLD": 3,
        "OPEN_SECONDS": 30,
        "OPEN_JITTER": 0.0,
        "DEGRADED_MESSAGE": None,
        "BREAKER_STORE": {"BACKEND": STORES[request.param], "OPTIONS": {"clock": clock}},
    }
    with override_settings(FLEXIAI=flexiai):
        yield clock


@pytest.fixture
def two(make_provider, clock):
    return make_provider("primary", priority=1), make_provider("secondary", priority=2)


def test_the_highest_priority_provider_answers(two, fake_upstream):
    result = flexiai_django.chat(HELLO)
    assert result.content == "primary: hello"
    assert (result.provider, result.model, result.tier, result.attempts) == (
        "primary", "primary-model", "provider", 1)
    assert result.latency_ms > 0
    assert fake_upstream.hits("secondary") == 0


def test_a_prompt_string_is_a_user_message(two):
    assert flexiai_django.chat("hi there").content == "primary: hi there"


def test_a_failing_primary_falls_over_to_the_secondary(two, fake_upstream):
    fake_upstream.set_fault("primary", status=500)
    result = flexiai_django.chat(HELLO)
    assert result.content == "secondary: hello"
    assert result.attempts == 2
    assert [(a.provider, a.outcome) for a in result.trail] == [
        ("primary", "server_error"), ("secondary", "ok")]


def test_threshold_failures_open_the_breaker_and_then_it_is_skipped_without_a_call(
        two, fake_upstream):
    fake_upstream.set_fault("primary", status=503)
    for _ in range(3):
        flexiai_django.chat(HELLO)
    assert breaker_of("primary").state is State.OPEN
    hits = fake_upstream.hits("primary")

    result = flexiai_django.chat(HELLO)

    assert fake_upstream.hits("primary") == hits == 3
    assert result.provider == "secondary" and result.attempts == 1
    assert result.trail[0].outcome == "skipped:open"


def test_after_the_open_period_a_successful_probe_closes_it(two, fake_upstream, clock):
    fake_upstream.set_fault("primary", status=500, times=3)
    for _ in range(3):
        flexiai_django.chat(HELLO)
    clock.advance(29)
    assert flexiai_django.chat(HELLO).provider == "secondary"

    clock.advance(1)
    result = flexiai_django.chat(HELLO)

    assert result.provider == "primary"
    assert breaker_of("primary").state is State.CLOSED


def test_a_failed_probe_reopens_it_for_longer(two, fake_upstream, clock):
    fake_upstream.set_fault("primary", status=500)
    for _ in range(3):
        flexiai_django.chat(HELLO)
    clock.advance(30)
    result = flexiai_django.chat(HELLO)
    assert result.provider == "secondary"
    state = breaker_of("primary")
    assert state.state is State.OPEN and state.openings == 2
    assert state.retry_at == pytest.approx(clock.now + 60)
    assert fake_upstream.hits("primary") == 4


@pytest.mark.parametrize("status", [400, 413, 422])
def test_a_request_error_neither_trips_the_breaker_nor_fails_over(two, fake_upstream, status):
    fake_upstream.set_fault("primary", status=status)
    for _ in range(5):
        with pytest.raises(flexiai_django.BadRequest) as caught:
            flexiai_django.chat(HELLO)
    assert caught.value.status == status
    assert fake_upstream.hits("secondary") == 0
    assert breaker_of("primary").state is State.CLOSED
    assert breaker_of("primary").failures == 0


@pytest.mark.parametrize("status", [401, 403, 404])
def test_a_credentials_error_fails_over_but_does_not_trip(two, fake_upstream, status):
    fake_upstream.set_fault("primary", status=status)
    for _ in range(5):
        assert flexiai_django.chat(HELLO).provider == "secondary"
    assert breaker_of("primary").state is State.CLOSED


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ({"status": 429, "retry_after": 7}, "rate_limited"),
        ({"status": 502}, "server_error"),
        ({"reset": True}, "connection_error"),
        ({"malformed": True}, "malformed_reply"),
        ({"truncated": True}, "connection_error"),
    ],
)
def test_upstream_faults_count_as_failures_and_fail_over(two, fake_upstream, fault, kind):
    fake_upstream.set_fault("primary", **fault)
    result = flexiai_django.chat(HELLO)
    assert result.provider == "secondary"
    assert result.trail[0].outcome == kind
    assert breaker_of("primary").failures == 1


@pytest.fixture
def slow_primary(make_provider, clock, fake_upstream):
    make_provider("primary", priority=1, timeout=0.3)
    make_provider("secondary", priority=2)
    fake_upstream.set_fault("primary", delay=5)


def test_a_slow_provider_is_cut_off_at_its_timeout(slow_primary):
    result = flexiai_django.chat(HELLO)
    assert result.provider == "secondary"
    assert result.trail[0].outcome == "timeout"
    assert result.latency_ms < 5000


def test_when_every_provider_fails_the_last_good_answer_is_served(two, fake_upstream):
    first = flexiai_django.chat(HELLO)
    fake_upstream.set_fault("primary", status=500)
    fake_upstream.set_fault("secondary", status=500)

    result = flexiai_django.chat([{"role": "user", "content": "  hello "}])

    assert result.tier == "cache"
    assert result.content == first.content
    assert result.provider == "primary"
    assert result.attempts == 2


def test_with_no_cached_answer_the_degraded_message_is_served(two, fake_upstream):
    fake_upstream.set_fault("primary", status=500)
    fake_upstream.set_fault("secondary", reset=True)
    with override_settings(FLEXIAI={"DEGRADED_MESSAGE": "Back soon."}):
        result = flexiai_django.chat(HELLO)
    assert (result.tier, result.content, result.provider) == ("degraded", "Back soon.", None)
    assert result.degraded


def test_with_no_tier_left_no_provider_available_is_raised(two, fake_upstream):
    fake_upstream.set_fault("primary", status=500)
    fake_upstream.set_fault("secondary", status=500)
    with pytest.raises(flexiai_django.NoProviderAvailable) as caught:
        flexiai_django.chat(HELLO)
    assert caught.value.attempts == 2
    assert caught.value.errors == ["primary: server_error", "secondary: server_error"]
    assert caught.value.retry_after == 30


def test_retry_after_is_when_the_first_breaker_will_probe(two, fake_upstream, clock):
    fake_upstream.set_fault("primary", status=500)
    fake_upstream.set_fault("secondary", status=500)
    for _ in range(3):
        with pytest.raises(flexiai_django.NoProviderAvailable):
            flexiai_django.chat(HELLO)
    clock.advance(20)
    with pytest.raises(flexiai_django.NoProviderAvailable) as caught:
        flexiai_django.chat(HELLO)
    assert caught.value.attempts == 0
    assert caught.value.retry_after == 10


def test_no_providers_at_all_is_no_provider_available(clock):
    with pytest.raises(flexiai_django.NoProviderAvailable):
        flexiai_django.chat(HELLO)


def test_a_disabled_provider_is_never_called(make_provider, clock, fake_upstream):
    make_provider("primary", priority=1, enabled=False)
    make_provider("secondary", priority=2)
    assert flexiai_django.chat(HELLO).provider == "secondary"
    assert fake_upstream.hits("primary") == 0


def test_an_edit_to_a_provider_takes_effect_on_the_next_call(two):
    _, secondary = two
    secondary.priority = 0
    secondary.save()
    assert flexiai_django.chat(HELLO).provider == "secondary"


def test_model_routes_to_a_named_provider(two):
    assert flexiai_django.chat(HELLO, model="secondary").provider == "secondary"
    assert flexiai_django.chat(HELLO, model="secondary-model").provider == "secondary"


def test_an_unknown_model_is_refused(two):
    with pytest.raises(flexiai_django.UnknownModel):
        flexiai_django.chat(HELLO, model="gpt-17")


def test_an_admin_forced_open_breaker_diverts_traffic(two):
    flexiai_django.breaker("llm:primary").force_open()
    assert flexiai_django.chat(HELLO).provider == "secondary"


def test_parameters_reach_the_provider(two, fake_upstream):
    flexiai_django.chat(HELLO, temperature=0.2, max_tokens=50, top_p=0.9, stop="END")
    body = fake_upstream.requests("primary")[-1].json
    assert body["temperature"] == 0.2 and body["max_tokens"] == 50
    assert body["top_p"] == 0.9 and body["stop"] == ["END"]
    assert body["model"] == "primary-model"


# -- async -----------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_achat_fails_over_like_chat(two, fake_upstream):
    fake_upstream.set_fault("primary", status=500)
    result = await flexiai_django.achat(HELLO)
    assert (result.provider, result.attempts) == ("secondary", 2)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_achat_enforces_the_timeout(slow_primary):
    result = await flexiai_django.achat(HELLO)
    assert result.provider == "secondary"
    assert result.trail[0].outcome == "timeout"


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_achat_serves_the_cache_tier(two, fake_upstream):
    await flexiai_django.achat(HELLO)
    await cache_tier.drain()
    fake_upstream.set_fault("primary", status=500)
    fake_upstream.set_fault("secondary", status=500)
    result = await flexiai_django.achat(HELLO)
    assert result.tier == "cache" and result.content == "primary: hello"


# -- streaming -------------------------------------------------------------------------

def test_stream_yields_pieces_and_knows_its_provider(two):
    stream = flexiai_django.stream([{"role": "user", "content": "one two three"}])
    assert stream.provider == "primary"
    assert "".join(stream) == "primary: one two three"
    assert stream.result.content == "primary: one two three"


def test_stream_fails_over_before_the_first_chunk(two, fake_upstream):
    fake_upstream.set_fault("primary", status=500)
    stream = flexiai_django.stream(HELLO)
    assert stream.provider == "secondary" and stream.attempts == 2
    assert "".join(stream) == "secondary: hello"


def continuation_off():
    return override_settings(FLEXIAI={**settings.FLEXIAI, "CONTINUE_STREAMS": False})


def test_a_failure_after_the_first_chunk_ends_the_stream_and_counts(two, fake_upstream):
    """With continuation off; it is on by default (tests/test_stream_continuation.py)."""
    fake_upstream.set_fault("primary", stream_fail_after=2)
    with continuation_off():  # (a settings change starts a new local store: all inside)
        stream = flexiai_django.stream([{"role": "user", "content": "a b c d e f"}])
        received = []
        with pytest.raises(flexiai_django.StreamInterrupted):
            for piece in stream:
                received.append(piece)
        assert "".join(received).startswith("primary:")
        assert fake_upstream.hits("secondary") == 0
        assert breaker_of("primary").failures == 1


def test_a_finished_stream_feeds_the_cache_tier(two, fake_upstream):
    "".join(flexiai_django.stream(HELLO))
    fake_upstream.set_fault("primary", status=500)
    fake_upstream.set_fault("secondary", status=500)
    stream = flexiai_django.stream(HELLO)
    assert stream.tier == "cache"
    assert "".join(stream) == "primary: hello"


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_astream_fails_over_before_the_first_chunk(two, fake_upstream):
    fake_upstream.set_fault("primary", reset=True)
    stream = await flexiai_django.astream(HELLO)
    assert stream.provider == "secondary"
    assert "".join([piece async for piece in stream]) == "secondary: hello"


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_astream_mid_stream_failure_is_raised(two, fake_upstream):
    fake_upstream.set_fault("primary", stream_fail_after=1)
    with continuation_off():
        stream = await flexiai_django.astream([{"role": "user", "content": "a b c d"}])
        with pytest.raises(flexiai_django.StreamInterrupted):
            async for _ in stream:
                pass
        assert breaker_of("primary").failures == 1


# -- decorator -------------------------------------------------------------------------

def test_the_llm_decorator_sends_the_returned_prompt(two, fake_upstream):
    @flexiai_django.llm(system="Be brief.", temperature=0)
    def summarise(text):
        return f"Summarise: {text}"

    result = summarise("the news")
    assert result.content == "primary: Summarise: the news"
    body = fake_upstream.requests("primary")[-1].json
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["temperature"] == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_the_llm_decorator_on_an_async_function(two):
    @flexiai_django.llm
    async def greet(name):
        return f"Greet {name}"

    assert (await greet("Ada")).content == "primary: Greet Ada"


# -- secrets ---------------------------------------------------------------------------

def test_no_log_line_or_error_carries_a_provider_key(make_provider, clock, fake_upstream, caplog):
    key = "sk-never-show-me-31337"
    make_provider("primary", priority=1, api_key=key)
    make_provider("secondary", priority=2, api_key=key)
    fake_upstream.set_fault("primary", status=401)
    fake_upstream.set_fault("secondary", status=500)
    with caplog.at_level("DEBUG"), pytest.raises(flexiai_django.NoProviderAvailable) as caught:
        flexiai_django.chat(HELLO)
    assert fake_upstream.requests("primary")[-1].headers["authorization"] == f"Bearer {key}"
    assert caplog.records, "the failures were logged"
    logged = caplog.text + " ".join(str(r.__dict__) for r in caplog.records)
    assert key not in logged
    assert key not in str(caught.value) and key not in repr(caught.value.errors)


@pytest.mark.parametrize("call", ["chat", "stream"])
def test_a_misspelt_parameter_is_a_type_error_naming_it(two, fake_upstream, call):
    with pytest.raises(TypeError, match="'max_token'"):
        getattr(flexiai_django, call)("hi", max_token=50)
    assert fake_upstream.requests("primary") == []


@pytest.mark.asyncio
async def test_async_calls_refuse_a_misspelt_parameter_too(two):
    with pytest.raises(TypeError, match="'temprature'"):
        await flexiai_django.achat("hi", temprature=0)
    with pytest.raises(TypeError, match="'max_token'"):
        await flexiai_django.astream("hi", max_token=5)


def test_the_decorator_refuses_a_misspelt_parameter_when_it_decorates():
    with pytest.raises(TypeError, match="'temprature'"):
        flexiai_django.llm(temprature=0)


def test_the_package_is_typed_for_its_users():
    from importlib import resources

    assert resources.files("flexiai_django").joinpath("py.typed").is_file()


WEATHER = {"type": "function", "function": {"name": "get_weather",
                                            "parameters": {"type": "object"}}}


def test_tools_from_python_give_a_tool_call_answer_then_a_final_one(two, fake_upstream):
    result = flexiai_django.chat(HELLO, tools=[WEATHER], tool_choice="required")
    assert result.finish_reason == "tool_calls" and result.content == ""
    [call] = result.tool_calls
    history = [*HELLO,
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": call.id, "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments}}]},
               {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    assert flexiai_django.chat(history, tools=[WEATHER]).content == "primary: tool said: sunny"
    assert breaker_of("primary").state == State.CLOSED


def test_a_streamed_tool_call_comes_as_deltas_and_a_whole_result(two):
    stream = flexiai_django.stream(HELLO, tools=[WEATHER])
    pieces = [d for d in stream.deltas() if d.tool_calls]
    assert pieces[0].tool_calls[0].name == "get_weather"
    assert stream.result.tool_calls[0].name == "get_weather"
    assert stream.result.finish_reason == "tool_calls"


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_an_async_stream_gives_deltas_too(two):
    stream = await flexiai_django.astream(HELLO, tools=[WEATHER])
    calls = [c async for d in stream.adeltas() for c in d.tool_calls]
    assert calls[0].name == "get_weather"


def test_a_bad_value_from_python_is_refused_before_any_call(two, fake_upstream):
    from flexiai_django.validation import InvalidRequest

    with pytest.raises(InvalidRequest, match="tools"):
        flexiai_django.chat(HELLO, tools=[{"name": "not openai's shape"}])
    with pytest.raises(InvalidRequest, match="temperature"):
        flexiai_django.chat(HELLO, temperature=7)
    assert fake_upstream.hits("primary") == 0


def test_a_cached_tool_call_is_served_as_a_tool_call_and_keyed_by_its_tools(two,
                                                                           fake_upstream):
    first = flexiai_django.chat(HELLO, tools=[WEATHER])
    fake_upstream.set_fault("primary", status=500)
    fake_upstream.set_fault("secondary", status=500)
    cached = flexiai_django.chat(HELLO, tools=[WEATHER])
    assert cached.tier == "cache"
    assert cached.tool_calls == first.tool_calls
    assert cached.finish_reason == "tool_calls"
    streamed = flexiai_django.stream(HELLO, tools=[WEATHER])
    [piece] = list(streamed.deltas())
    assert [c.name for c in piece.tool_calls] == ["get_weather"]
    other = {"type": "function", "function": {"name": "other"}}
    with pytest.raises(flexiai_django.NoProviderAvailable):  # other tools: not that answer
        flexiai_django.chat(HELLO, tools=[other])


def open_then_probe_with_a_stream(fake_upstream, clock):
    """Trip the primary, wait out the open period, and start the half-open probe as a
    stream that has yielded its first piece."""
    fake_upstream.set_fault("primary", status=500, times=3)
    for _ in range(3):
        flexiai_django.chat(HELLO)
    clock.advance(30)
    stream = flexiai_django.stream("tell me a long story")
    assert stream.provider == "primary"
    pieces = iter(stream)
    next(pieces)
    return pieces


def test_a_probe_stream_abandoned_mid_way_does_not_close_the_breaker(two, fake_upstream,
                                                                      clock):
    pieces = open_then_probe_with_a_stream(fake_upstream, clock)
    assert breaker_of("primary").state is State.HALF_OPEN
    pieces.close()  # the client went away before the answer was complete
    assert breaker_of("primary").state is State.HALF_OPEN
    assert flexiai_django.chat(HELLO).provider == "primary"  # the next call probes again
    assert breaker_of("primary").state is State.CLOSED


def test_a_probe_stream_read_to_its_end_closes_the_breaker(two, fake_upstream, clock):
    pieces = open_then_probe_with_a_stream(fake_upstream, clock)
    list(pieces)
    assert breaker_of("primary").state is State.CLOSED


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_an_async_probe_stream_abandoned_mid_way_does_not_close_the_breaker(
        two, fake_upstream, clock):
    from asgiref.sync import sync_to_async

    fake_upstream.set_fault("primary", status=500, times=3)
    for _ in range(3):
        await flexiai_django.achat(HELLO)
    clock.advance(30)
    stream = await flexiai_django.astream("tell me a long story")
    pieces = stream.__aiter__()
    await pieces.__anext__()
    await pieces.aclose()
    assert (await sync_to_async(breaker_of)("primary")).state is State.HALF_OPEN
