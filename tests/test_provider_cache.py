"""The per-process provider cache: due reads are shared, and a change is never overwritten
by a read that started before it."""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async

from flexiai_django import provider_cache
from flexiai_django.models import Provider

pytestmark = pytest.mark.django_db(transaction=True)


def make(name: str, priority: int = 1) -> Provider:
    return Provider.objects.create(name=name, kind="openai_compatible", model="m",
                                   base_url="http://127.0.0.1:9/v1", priority=priority)


@pytest.fixture
def reads(monkeypatch):
    """How many times the table is read (the real read, counted)."""
    count = {"n": 0}
    real = provider_cache._load

    def counted():
        count["n"] += 1
        return real()

    monkeypatch.setattr(provider_cache, "_load", counted)
    return count


@pytest.mark.asyncio
async def test_concurrent_requests_that_find_the_cache_due_share_one_read(reads):
    await sync_to_async(make)("one")
    provider_cache.invalidate()
    snapshots = await asyncio.gather(*(provider_cache.aget_snapshot() for _ in range(32)))
    assert reads["n"] == 1
    assert {tuple(p.name for p in s.providers) for s in snapshots} == {("one",)}


def test_threads_that_find_the_cache_due_share_one_read(reads):
    make("one")
    provider_cache.invalidate()
    start = threading.Barrier(8)
    names: list[tuple[str, ...]] = []

    def ask() -> None:
        start.wait()
        names.append(tuple(p.name for p in provider_cache.get_providers()))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert names == [("one",)] * 8
    assert reads["n"] == 1


def test_a_read_that_started_before_a_change_is_not_kept(monkeypatch):
    make("old")
    provider_cache.invalidate()
    real = provider_cache._load
    read_done = threading.Event()
    changed = threading.Event()

    def slow_read():
        snapshot = real()
        read_done.set()
        changed.wait(5)  # the change lands while this read is on its way back
        return snapshot

    monkeypatch.setattr(provider_cache, "_load", slow_read)
    reader = threading.Thread(target=provider_cache.get_providers)
    reader.start()
    assert read_done.wait(5)
    monkeypatch.setattr(provider_cache, "_load", real)
    make("new", priority=0)  # post_save invalidates
    changed.set()
    reader.join()
    assert [p.name for p in provider_cache.get_providers()] == ["new", "old"]
