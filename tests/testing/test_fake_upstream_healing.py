"""The fake upstream's fault modes for healing: slow first token, stall, one bad chunk,
refused prefill, a context window, a schedule, and continuing a cut-off answer."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from flexiai_django.testing.fake_upstream import FakeUpstream


@pytest.fixture(autouse=True)
def _fresh_upstream(upstream: FakeUpstream) -> None:
    upstream.reset()


def url(up: FakeUpstream, api: str = "openai") -> str:
    paths = {"openai": "/chat/completions", "anthropic": "/v1/messages", "ollama": "/api/chat"}
    return up.base_url(api=api) + paths[api]


def body(*messages: tuple[str, str], **extra: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 50,
            "messages": [{"role": r, "content": c} for r, c in messages], **extra}


def timed_pieces(client: httpx.Client, target: str, payload: dict[str, Any]
                 ) -> list[tuple[float, str | None]]:
    """(seconds since the request, content piece or None for an unreadable event)."""
    started, out = time.monotonic(), []
    with client.stream("POST", target, json={**payload, "stream": True}) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            data = line.removeprefix("data: ")
            if not line.startswith("data: ") or data == "[DONE]":
                continue
            try:
                delta = json.loads(data)["choices"][0]["delta"]
            except ValueError:
                out.append((time.monotonic() - started, None))
                continue
            if delta.get("content"):
                out.append((time.monotonic() - started, delta["content"]))
    return out


def test_a_slow_first_token_comes_after_the_delay(upstream, client):
    upstream.set_fault(first_token_delay=0.4)
    pieces = timed_pieces(client, url(upstream), body(("user", "one two three")))
    assert pieces[0][0] >= 0.4
    assert "".join(p for _, p in pieces if p) == "echo: one two three"


def test_a_plain_call_with_a_slow_first_token_waits_before_replying(upstream, client):
    upstream.set_fault(first_token_delay=0.3)
    started = time.monotonic()
    response = client.post(url(upstream), json=body(("user", "hi")))
    assert response.status_code == 200 and time.monotonic() - started >= 0.3


def test_a_stall_goes_silent_after_n_pieces_then_carries_on(upstream, client):
    upstream.set_fault(stall_after=2, stall_for=0.5)
    pieces = timed_pieces(client, url(upstream), body(("user", "one two three")))
    texts = [p for _, p in pieces]
    assert texts == ["echo: ", "one ", "two ", "three"]
    assert pieces[1][0] < 0.5 <= pieces[2][0]


def test_one_malformed_chunk_is_followed_by_the_rest_of_the_answer(upstream, client):
    upstream.set_fault(malformed_chunk_at=2)
    pieces = timed_pieces(client, url(upstream), body(("user", "one two three")))
    assert [p for _, p in pieces] == ["echo: ", "one ", None, "two ", "three"]


@pytest.mark.parametrize("api", ["openai", "anthropic", "ollama"])
def test_a_refused_prefill_is_a_400_and_other_requests_are_served(upstream, client, api):
    upstream.set_fault(prefill_refused=True)
    refused = client.post(url(upstream, api), json=body(("user", "hi"), ("assistant", "ec")))
    served = client.post(url(upstream, api), json=body(("user", "hi")))
    assert refused.status_code == 400 and "prefill" in refused.text
    assert served.status_code == 200


def test_a_context_window_refuses_longer_prompts_only(upstream, client):
    upstream.set_fault(context_window=5)
    short = client.post(url(upstream), json=body(("user", "one two three")))
    long = client.post(url(upstream), json=body(("user", "one two three four five six")))
    assert short.status_code == 200
    assert long.status_code == 400 and "context length" in long.text


def test_a_schedule_is_down_for_its_time_then_healthy(upstream, client):
    upstream.set_fault(status=503, down_for=0.5)
    started = time.monotonic()
    statuses = [client.post(url(upstream), json=body(("user", "hi"))).status_code]
    while statuses[-1] != 200:
        assert time.monotonic() - started < 5, "the scope never healed"
        time.sleep(0.05)  # polling pace only; the assertions are on what was seen
        statuses.append(client.post(url(upstream), json=body(("user", "hi"))).status_code)
    assert statuses[0] == 503 and time.monotonic() - started >= 0.5


@pytest.mark.parametrize("api", ["openai", "anthropic", "ollama"])
def test_a_prefill_is_continued_with_the_rest_of_the_answer(upstream, client, api):
    payload = body(("user", "one two three four"), ("assistant", "echo: one two"),
                   stream=False)
    response = client.post(url(upstream, api), json=payload)
    text = json.dumps(response.json())
    assert " three four" in text and "echo: one" not in text


def test_an_instruction_to_continue_repeats_the_last_word_then_goes_on(upstream, client):
    payload = body(("user", "one two three four"), ("assistant", "echo: one two "),
                   ("user", "Continue where you stopped."))
    answer = client.post(url(upstream), json=payload).json()["choices"][0]["message"]
    assert answer["content"] == "two three four"


def test_a_whole_earlier_answer_is_a_conversation_not_a_continuation(upstream, client):
    payload = body(("user", "hi"), ("assistant", "echo: hi"), ("user", "again"))
    answer = client.post(url(upstream), json=payload).json()["choices"][0]["message"]
    assert answer["content"] == "echo: again"
