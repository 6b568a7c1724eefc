"""The answer-cache writes of async code: off the request path, batched, bounded."""

import asyncio
import threading

import pytest

from flexiai_django import cache_tier
from flexiai_django.chat_types import ChatRequest, Completion

pytestmark = pytest.mark.django_db


def answer(i):
    return ChatRequest.build(f"question {i}"), "primary", Completion(f"answer {i}", "m")


def blocked_writes(monkeypatch):
    """Hold the writer inside its first write until the returned event is set; the sizes
    of the batches it writes are listed in ``batches``."""
    batches: list[int] = []
    release = threading.Event()
    write = cache_tier._write_many

    def held(batch):
        batches.append(len(batch))
        release.wait(10)
        write(batch)

    monkeypatch.setattr(cache_tier, "_write_many", held)
    return batches, release


@pytest.mark.asyncio
async def test_answers_that_arrive_during_a_write_go_in_the_next_batch(monkeypatch,
                                                                       flexiai_reset):
    batches, release = blocked_writes(monkeypatch)
    cache_tier.remember_soon(*answer(0))
    while not batches:  # the writer has taken the first answer and is writing it
        await asyncio.sleep(0.001)
    for i in range(1, 10):
        cache_tier.remember_soon(*answer(i))
    release.set()
    await cache_tier.drain()
    assert batches == [1, 9]
    for i in range(10):
        assert cache_tier.recall(answer(i)[0])["content"] == f"answer {i}"


@pytest.mark.asyncio
async def test_an_answer_is_written_soon_without_anyone_asking(monkeypatch, flexiai_reset):
    written = threading.Event()
    write = cache_tier._write_many
    monkeypatch.setattr(cache_tier, "_write_many", lambda b: (write(b), written.set()))
    cache_tier.remember_soon(*answer(1))
    assert cache_tier.recall(answer(1)[0]) is None  # not yet: it waits for company
    assert await asyncio.to_thread(written.wait, 5)
    assert cache_tier.recall(answer(1)[0])["content"] == "answer 1"


def test_an_answer_from_a_loop_that_ends_with_its_call_is_still_written(flexiai_reset):
    """A sync caller (WSGI, Django's test client) runs the async path in an event loop
    that ends with the call: the write must not depend on that loop."""
    asyncio.run(asyncio.sleep(0))  # a loop of its own, as async_to_sync makes
    asyncio.run(_remember_in_a_short_loop())
    assert cache_tier.flush(5)
    assert cache_tier.recall(answer(7)[0])["content"] == "answer 7"


async def _remember_in_a_short_loop():
    cache_tier.remember_soon(*answer(7))


@pytest.mark.asyncio
async def test_the_latest_answer_for_a_key_wins(flexiai_reset):
    request, provider, _ = answer(0)
    for text in ("first", "second", "third"):
        cache_tier.remember_soon(request, provider, Completion(text, "m"))
    await cache_tier.drain()
    assert cache_tier.recall(request)["content"] == "third"


@pytest.mark.asyncio
async def test_a_stuck_cache_drops_writes_instead_of_queueing_them(monkeypatch, flexiai_reset):
    batches, release = blocked_writes(monkeypatch)
    for i in range(3 * cache_tier.MAX_PENDING_WRITES):
        cache_tier.remember_soon(*answer(i))
    writer = cache_tier._writer.get()
    assert writer.pending == cache_tier.MAX_PENDING_WRITES
    release.set()
    await cache_tier.drain()
    assert writer.pending == 0
    assert sum(batches) == cache_tier.MAX_PENDING_WRITES


@pytest.mark.asyncio
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
