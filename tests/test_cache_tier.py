"""The answer-cache writes of async code: off the request path, batched, bounded."""

import asyncio
import threading

import pytest

from flexiai_django import cache_tier
from flexiai_django.chat_types import ChatRequest, Completion

pytestmark = [pytest.mark.django_db, pytest.mark.asyncio]


def answer(i):
    return ChatRequest.build(f"question {i}"), "primary", Completion(f"answer {i}", "m")


async def test_answers_close_together_go_in_one_batch(monkeypatch, flexiai_reset):
    batches = []
    write = cache_tier._write_many
    monkeypatch.setattr(cache_tier, "_write_many", lambda b: (batches.append(len(b)), write(b)))
    for i in range(10):
        cache_tier.remember_soon(*answer(i))
    await cache_tier.drain()
    assert batches == [10]
    for i in range(10):
        assert cache_tier.recall(answer(i)[0])["content"] == f"answer {i}"


async def test_an_answer_is_written_within_the_delay_without_anyone_asking(monkeypatch,
                                                                          flexiai_reset):
    written = asyncio.Event()
    loop = asyncio.get_running_loop()
    write = cache_tier._write_many

    def tracked(batch):
        write(batch)
        loop.call_soon_threadsafe(written.set)

    monkeypatch.setattr(cache_tier, "_write_many", tracked)
    cache_tier.remember_soon(*answer(1))
    assert cache_tier.recall(answer(1)[0]) is None  # not yet: it waits for company
    await asyncio.wait_for(written.wait(), timeout=5)
    assert cache_tier.recall(answer(1)[0])["content"] == "answer 1"


async def test_answers_that_arrive_during_a_write_go_in_the_next_batch(monkeypatch,
                                                                       flexiai_reset):
    batches = []
    release = threading.Event()
    write = cache_tier._write_many

    def slow(batch):
        batches.append(len(batch))
        release.wait(10)
        write(batch)

    monkeypatch.setattr(cache_tier, "_write_many", slow)
    cache_tier.remember_soon(*answer(0))
    writer = cache_tier._writers[asyncio.get_running_loop()]
    writer.start()  # the delay is up
    for i in range(1, 6):
        cache_tier.remember_soon(*answer(i))
    release.set()
    await cache_tier.drain()
    assert batches == [1, 5]
    assert cache_tier.recall(answer(5)[0])["content"] == "answer 5"


async def test_the_latest_answer_for_a_key_wins(flexiai_reset):
    request, provider, _ = answer(0)
    for text in ("first", "second", "third"):
        cache_tier.remember_soon(request, provider, Completion(text, "m"))
    await cache_tier.drain()
    assert cache_tier.recall(request)["content"] == "third"


async def test_a_stuck_cache_drops_writes_instead_of_queueing_them(monkeypatch, flexiai_reset):
    release = threading.Event()
    monkeypatch.setattr(cache_tier, "_write_many", lambda batch: release.wait(10))
    for i in range(3 * cache_tier.MAX_PENDING_WRITES):
        cache_tier.remember_soon(*answer(i))
    writer = cache_tier._writers[asyncio.get_running_loop()]
    assert len(writer.queued) == cache_tier.MAX_PENDING_WRITES
    release.set()
    await cache_tier.drain()
    assert writer.flight is None and not writer.queued


async def test_a_failing_cache_is_logged_not_raised(monkeypatch, caplog, flexiai_reset):
    from django.core.cache import caches

    def broken(*args, **kwargs):
        raise ConnectionError("down")

    # caches are per thread: patch the class, the write happens in a worker thread
    monkeypatch.setattr(type(caches["default"]), "set_many", broken)
    try:
        cache_tier.remember_soon(*answer(1))
        await cache_tier.drain()
        assert "answer cache failing (ConnectionError)" in caplog.text
        assert "down" not in caplog.text, "the type, never the text"
        assert not cache_tier.connected()
    finally:
        cache_tier.forget_outage()
