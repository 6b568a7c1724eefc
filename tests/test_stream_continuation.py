"""A stream broken mid-answer is continued on the next provider (Python API, sync and async).

Every provider's fake scope answers with the same prefix, so the whole answer is known
("echo: " + the question) and a test can ask that the caller got exactly it, once.
"""

import pytest
from django.conf import settings
from django.test import override_settings

import flexiai_django
from flexiai_django.breakers import get_store
from flexiai_django.breakers.state import State
from flexiai_django.conf import DEFAULTS
from flexiai_django.testing.fake_upstream.formats.base import prompt_tokens

pytestmark = pytest.mark.django_db

QUESTION = "one two three four five"
ASK = [{"role": "user", "content": QUESTION}]
WHOLE = "echo: " + QUESTION


def failures(name):
    return get_store().get(f"llm:{name}").failures


@pytest.fixture
def chain(make_provider, fake_upstream):
    """``chain("openai", "anthropic")``: providers p1, p2… in that order, one echo."""
    def make(*kinds, **fields):
        names = [f"p{i}" for i in range(1, len(kinds) + 1)]
        for i, (name, kind) in enumerate(zip(names, kinds, strict=True)):
            make_provider(name, kind=kind, priority=i + 1, **fields)
            fake_upstream.set_reply_prefix(name, "echo: ")
        return names
    return make


def last_turns(fake_upstream, scope, n=2):
    """The last ``n`` turns of the last request ``scope`` got, as (role, text)."""
    messages = fake_upstream.requests(scope)[-1].json["messages"][-n:]
    return [(m["role"], m["content"] if isinstance(m["content"], str)
             else "".join(b["text"] for b in m["content"])) for m in messages]


def test_openai_to_openai_by_instruction_with_the_repeat_dropped(chain, fake_upstream):
    chain("openai", "openai")
    fake_upstream.set_fault("p1", stream_fail_after=3)
    stream = flexiai_django.stream(ASK)
    assert "".join(stream) == WHOLE
    assert last_turns(fake_upstream, "p2") == [
        ("assistant", "echo: one two"), ("user", DEFAULTS["CONTINUATION_INSTRUCTION"])]
    result = stream.result
    assert (result.content, result.provider, result.continued_from) == (WHOLE, "p2", ("p1",))
    assert result.continued and stream.continued_from == ("p1",)
    assert [(a.provider, a.outcome) for a in result.trail] == [
        ("p1", "stream_interrupted"), ("p2", "ok")]
    assert (fake_upstream.hits("p1"), fake_upstream.hits("p2")) == (1, 1)
    assert (failures("p1"), failures("p2")) == (1, 0)


@pytest.mark.parametrize("second", ["anthropic", "ollama"])
def test_openai_to_a_kind_that_takes_a_prefill(chain, fake_upstream, second):
    chain("openai", second)
    fake_upstream.set_fault("p1", stream_fail_after=2)
    stream = flexiai_django.stream(ASK)
    assert "".join(stream) == WHOLE
    # the prefill is the text so far without its trailing space (Anthropic refuses that)
    assert last_turns(fake_upstream, "p2") == [("user", QUESTION), ("assistant", "echo: one")]
    assert stream.result.continued_from == ("p1",)


def test_a_refused_prefill_is_sent_again_as_an_instruction(chain, fake_upstream):
    chain("openai", "anthropic")
    fake_upstream.set_fault("p1", stream_fail_after=3)
    fake_upstream.set_fault("p2", prefill_refused=True)
    assert "".join(flexiai_django.stream(ASK)) == WHOLE
    assert fake_upstream.hits("p2") == 2
    assert last_turns(fake_upstream, "p2") == [
        ("assistant", "echo: one two"), ("user", DEFAULTS["CONTINUATION_INSTRUCTION"])]
    assert (failures("p1"), failures("p2")) == (1, 0)


@pytest.mark.parametrize("fault", [{"malformed_chunk_at": 2},
                                   {"stall_after": 2, "stall_for": 5.0}])
def test_a_malformed_chunk_or_a_stall_is_continued_too(chain, fake_upstream, fault):
    chain("openai", "openai", timeout=0.5)  # a stall is cut off by the read timeout
    fake_upstream.set_fault("p1", **fault)
    stream = flexiai_django.stream(ASK)
    assert "".join(stream) == WHOLE
    assert stream.result.continued_from == ("p1",) and failures("p1") == 1


def test_usage_is_the_sum_over_the_providers_that_wrote_the_answer(chain, fake_upstream):
    chain("anthropic", "openai")  # Anthropic says its prompt's size before the first piece
    fake_upstream.set_fault("p1", stream_fail_after=3)
    stream = flexiai_django.stream(ASK, include_usage=True)
    assert "".join(stream) == WHOLE
    second = prompt_tokens(fake_upstream.requests("p2")[-1].json)
    rest = "two three four five"  # what p2 wrote, its repeat of "two" included
    usage = stream.result.usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        len(QUESTION.split()) + second, len(rest.split()))


def test_a_second_break_goes_on_down_the_chain_past_an_open_breaker(chain, fake_upstream):
    chain("openai", "openai", "openai", "anthropic")
    fake_upstream.set_fault("p1", stream_fail_after=2)
    fake_upstream.set_fault("p2", stream_fail_after=1)
    get_store().force("llm:p3", State.FORCED_OPEN)
    stream = flexiai_django.stream(ASK)
    assert "".join(stream) == WHOLE
    result = stream.result
    assert (result.provider, result.continued_from) == ("p4", ("p1", "p2"))
    assert [(a.provider, a.outcome) for a in result.trail] == [
        ("p1", "stream_interrupted"), ("p2", "stream_interrupted"),
        ("p3", "skipped:forced_open"), ("p4", "ok")]
    assert fake_upstream.hits("p3") == 0
    assert (failures("p1"), failures("p2")) == (1, 1)


def test_the_cache_tier_remembers_the_whole_stitched_answer(chain, fake_upstream):
    chain("openai", "openai")
    fake_upstream.set_fault("p1", stream_fail_after=3)
    "".join(flexiai_django.stream(ASK))
    fake_upstream.set_fault("p1", status=500)
    fake_upstream.set_fault("p2", status=500)
    result = flexiai_django.chat(ASK)
    assert (result.tier, result.content, result.provider) == ("cache", WHOLE, "p2")


def test_with_no_provider_left_the_stream_ends_with_stream_interrupted(chain, fake_upstream):
    chain("openai", "openai")
    fake_upstream.set_fault("p1", stream_fail_after=2)
    fake_upstream.set_fault("p2", status=503)
    received = []
    with pytest.raises(flexiai_django.StreamInterrupted, match="no provider could continue"):
        for piece in flexiai_django.stream(ASK):
            received.append(piece)
    assert "".join(received) == "echo: one "
    assert (failures("p1"), failures("p2")) == (1, 1)


@pytest.mark.parametrize(("params", "why"), [
    ({"n": 2}, "n > 1"),
    ({"tools": [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]},
     "tool call"),
])
def test_a_tool_call_or_several_answers_are_not_continued(chain, fake_upstream, params, why):
    chain("openai", "openai")
    fake_upstream.set_fault("p1", stream_fail_after=2)
    with pytest.raises(flexiai_django.StreamInterrupted, match=f"not continued: {why}"):
        list(flexiai_django.stream(ASK, **params).deltas())
    assert fake_upstream.hits("p2") == 0 and failures("p1") == 1


def test_continuation_off_keeps_the_broken_stream_broken(chain, fake_upstream):
    chain("openai", "openai")
    fake_upstream.set_fault("p1", stream_fail_after=2)
    with override_settings(FLEXIAI={**settings.FLEXIAI, "CONTINUE_STREAMS": False}):
        with pytest.raises(flexiai_django.StreamInterrupted, match="continuation is off"):
            "".join(flexiai_django.stream(ASK))
        assert fake_upstream.hits("p2") == 0 and failures("p1") == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
@pytest.mark.parametrize("second", ["openai", "anthropic"])
async def test_astream_is_continued_the_same_way(chain, fake_upstream, second):
    from asgiref.sync import sync_to_async

    await sync_to_async(chain)("openai", second)
    fake_upstream.set_fault("p1", stream_fail_after=3)
    stream = await flexiai_django.astream(ASK)
    assert "".join([piece async for piece in stream]) == WHOLE
    assert stream.result.continued_from == ("p1",) and stream.provider == "p2"
    assert await sync_to_async(failures)("p1") == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_astream_prefill_refused_then_instruction(chain, fake_upstream):
    from asgiref.sync import sync_to_async

    await sync_to_async(chain)("openai", "anthropic")
    fake_upstream.set_fault("p1", stream_fail_after=3)
    fake_upstream.set_fault("p2", prefill_refused=True)
    stream = await flexiai_django.astream(ASK)
    assert "".join([piece async for piece in stream]) == WHOLE
    assert fake_upstream.hits("p2") == 2
