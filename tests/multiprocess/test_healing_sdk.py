"""Failures that heal, as the official openai SDK sees them through real workers.

Two uvicorn workers under gunicorn share one Redis; the fake upstream's demo providers
(primary: OpenAI-compatible, secondary: Anthropic, local: Ollama) misbehave on demand.
Each scenario asserts what the client receives, by when, and how many calls each
upstream got.
"""

import json
import os
import time

import openai
import pytest

from flexiai_django.breakers.redis_store import RedisBreakerStore
from flexiai_django.breakers.state import State

from .conftest import FLEXIAI, start, wait_until_every_worker

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

WORKERS = 2
QUESTION = "say hi to the gateway"
ANSWER = "echo: " + QUESTION
HI = [{"role": "user", "content": QUESTION}]
PROVIDERS = ("demo-primary", "demo-secondary", "demo-local")
HEALING = {**FLEXIAI, "MAX_RETRIES": 1, "RETRY_BACKOFF_SECONDS": 0.05,
           "FIRST_TOKEN_TIMEOUT": 2.0, "STALL_TIMEOUT": 1.0,
           # "hedged" routes like "auto" but hedges a late first token.
           "MODEL_ALIASES": {"auto": None, "hedged": None}, "HEDGED_ALIASES": ["hedged"],
           "HEDGE_DEFAULT_DELAY_SECONDS": 0.3}


@pytest.fixture(scope="module")
def site(seeded):
    server = start("uvicorn", seeded, workers=WORKERS, FLEXIAI_JSON=json.dumps(HEALING))
    yield server
    server.stop()


@pytest.fixture
def sdk(site, fake_upstream):
    """A client, once every worker sees every demo breaker closed (the last test's
    outages are forgotten)."""
    def all_closed(view):
        states = view["breakers"]
        return all(states.get(f"llm:{p}", {}).get("local", {}).get("state", "closed")
                   == "closed" for p in PROVIDERS)

    wait_until_every_worker(site.url, WORKERS, all_closed)
    return openai.OpenAI(base_url=f"{site.url}/v1", api_key="not-needed", max_retries=0)


def hits(fake_upstream):
    return tuple(fake_upstream.hits(p) for p in PROVIDERS)


def text_of(chunks):
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_a_rate_limited_primary_is_retried_once_its_retry_after_has_passed(sdk, fake_upstream):
    fake_upstream.set_fault("demo-primary", status=429, retry_after=1, times=1)
    started = time.monotonic()
    raw = sdk.chat.completions.with_raw_response.create(model="auto", messages=HI)
    elapsed = time.monotonic() - started
    assert raw.parse().choices[0].message.content == ANSWER
    assert raw.headers["x-flexiai-provider"] == "demo-primary"
    assert 1.0 <= elapsed < 4.0
    assert hits(fake_upstream) == (2, 0, 0)


def test_a_stream_that_ends_without_its_done_marker_is_complete(sdk, fake_upstream):
    fake_upstream.set_fault("demo-primary", no_end_marker=True)
    chunks = list(sdk.chat.completions.create(model="auto", messages=HI, stream=True))
    assert text_of(chunks) == ANSWER
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert hits(fake_upstream) == (1, 0, 0)


def test_a_cut_stream_whose_next_provider_refuses_prefill_is_continued_by_instruction(
        sdk, fake_upstream):
    fake_upstream.set_fault("demo-primary", stream_fail_after=3)
    fake_upstream.set_fault("demo-secondary", prefill_refused=True)
    chunks = list(sdk.chat.completions.create(model="auto", messages=HI, stream=True))
    assert text_of(chunks) == ANSWER
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].flexiai["providers"] == ["demo-primary", "demo-secondary"]
    assert hits(fake_upstream) == (1, 2, 0)  # the refused prefill, then the instruction
    second = fake_upstream.requests("demo-secondary")[-1].json["messages"]
    assert second[-2]["role"] == "assistant" and second[-1]["role"] == "user"


def test_a_stream_whose_first_token_is_late_is_served_by_the_next_provider(sdk, fake_upstream):
    fake_upstream.set_fault("demo-primary", first_token_delay=30)
    started = time.monotonic()
    chunks = list(sdk.chat.completions.create(model="auto", messages=HI, stream=True))
    elapsed = time.monotonic() - started
    assert text_of(chunks) == ANSWER
    assert HEALING["FIRST_TOKEN_TIMEOUT"] <= elapsed < HEALING["FIRST_TOKEN_TIMEOUT"] + 2.5
    assert hits(fake_upstream) == (1, 1, 0)


def test_a_stream_that_stalls_mid_answer_is_continued_by_the_next_provider(sdk, fake_upstream):
    fake_upstream.set_fault("demo-primary", stall_after=2, stall_for=30)
    started = time.monotonic()
    chunks = list(sdk.chat.completions.create(model="auto", messages=HI, stream=True))
    elapsed = time.monotonic() - started
    assert text_of(chunks) == ANSWER
    assert chunks[-1].flexiai["providers"] == ["demo-primary", "demo-secondary"]
    assert elapsed < HEALING["STALL_TIMEOUT"] + 2.5
    assert hits(fake_upstream) == (1, 1, 0)


def test_one_malformed_chunk_is_skipped_and_the_answer_completes(sdk, fake_upstream):
    fake_upstream.set_fault("demo-primary", malformed_chunk_at=2)
    chunks = list(sdk.chat.completions.create(model="auto", messages=HI, stream=True))
    assert text_of(chunks) == ANSWER
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].flexiai["provider"] == "demo-primary"
    assert "continued" not in chunks[-1].flexiai
    assert hits(fake_upstream) == (1, 0, 0)


def test_a_prompt_too_long_for_the_primary_goes_to_a_larger_window(sdk, fake_upstream):
    fake_upstream.set_fault("demo-primary", context_window=3)
    raw = sdk.chat.completions.with_raw_response.create(model="auto", messages=HI)
    assert raw.parse().choices[0].message.content == ANSWER
    assert raw.headers["x-flexiai-provider"] == "demo-secondary"
    assert hits(fake_upstream) == (1, 1, 0)
    primary = RedisBreakerStore(url=os.environ["REDIS_URL"]).get("llm:demo-primary")
    assert (primary.state, primary.total_failures) == (State.CLOSED, 0)  # not an outage


def test_a_hedged_request_whose_primary_is_slow_gets_the_first_answer(sdk, fake_upstream):
    fake_upstream.set_fault("demo-primary", first_token_delay=5)
    started = time.monotonic()
    raw = sdk.chat.completions.with_raw_response.create(model="hedged", messages=HI,
                                                        stream=True)
    chunks = list(raw.parse())
    elapsed = time.monotonic() - started
    assert text_of(chunks) == ANSWER
    assert raw.headers["x-flexiai-provider"] == "demo-secondary"
    # the hedge delay (0.3 s), not the first-token limit (2 s) nor the primary's 5 s
    assert elapsed < 1.5
    assert hits(fake_upstream) == (1, 1, 0)
    deadline = time.monotonic() + 5
    while fake_upstream.hangups < 1:  # the primary's call is cancelled, its socket closed
        assert time.monotonic() < deadline, "the losing call was left running"
        time.sleep(0.05)


def test_a_fast_primary_is_not_hedged(sdk, fake_upstream):
    chunks = list(sdk.chat.completions.create(model="hedged", messages=HI, stream=True))
    assert text_of(chunks) == ANSWER
    assert hits(fake_upstream) == (1, 0, 0)
