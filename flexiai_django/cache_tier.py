"""The cache tier: the last good answer for the same normalised request.

Written after every provider answer, read only when every provider failed. A broken
cache backend is treated as a miss: a fallback must never add an outage. Any error
from it (django-redis's ``ConnectionInterrupted``, a redis ``ResponseError`` such as OOM
or READONLY, …) starts an outage, logged once: the cache is left alone for
``RETRY_SECONDS``, then a probe write is tried (reads still succeed on an OOM or
read-only Redis) and the cache is used again once one succeeds. :func:`connected`
says whether it is working, for ``/health``.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import os
import queue
import threading
import time
from typing import Any

import orjson
from django.core.cache import BaseCache, caches
from django.dispatch import receiver

from flexiai_django import signals
from flexiai_django.chat_types import ChatRequest, Completion, Message
from flexiai_django.conf import get_settings
from flexiai_django.process_local import PerProcess
from flexiai_django.redis_outage import RedisOutage
from flexiai_django.redis_reach import server_of

PREFIX = "flexiai:answer:"
PROBE_KEY = "flexiai:answer-cache-probe"
RETRY_SECONDS = 1.0


def _new_outage() -> RedisOutage:
    return RedisOutage("answer cache failing (%s); serving without it",
                       "answer cache working again", RETRY_SECONDS)


_outage = _new_outage()


def _message_key(m: Message) -> list[Any]:
    key: list[Any] = [m.role, " ".join(m.content.split())]
    if m.parts or m.tool_calls or m.tool_call_id:
        key += [[getattr(p, "url", "") for p in m.parts],
                [[c.id, c.name, c.arguments] for c in m.tool_calls], m.tool_call_id]
    return key


def cache_key(request: ChatRequest) -> str:
    """Same caller scope, messages (role + whitespace-trimmed content, images, tool calls and
    results), tools, answer format and model route → same key.

    The scope keeps one API key's or user's answers from ever reaching another caller.
    """
    normalised: dict[str, Any] = {
        "scope": request.cache_scope,
        "model": request.model or "",
        "messages": [_message_key(m) for m in request.messages],
    }
    if request.n != 1:
        normalised["n"] = request.n
    if request.tools or request.response_format:
        normalised["tools"] = [[t.name, t.parameters] for t in request.tools]
        normalised["format"] = repr((request.response_format, request.tool_choice))
    digest = hashlib.sha256(orjson.dumps(normalised)).hexdigest()
    return PREFIX + digest


def _cache() -> BaseCache | None:
    s = get_settings()
    return caches[s.CACHE_ALIAS] if s.CACHE_ENABLED else None


def connected() -> bool:
    """False while the answer cache is failing (its backend raised; a retry is pending
    or a probe write failed); True when it works, and when it is disabled."""
    return _outage.connected


def _attach(cache: BaseCache) -> None:
    """Share the Redis server's reachability with the other users (django-redis only):
    a frozen Redis found by the breaker store keeps the cache off it too, and back."""
    global _attached
    _attached = (_outage, os.getpid())
    get_client = getattr(getattr(cache, "client", None), "get_client", None)
    if callable(get_client):
        try:
            _outage.attach(server_of(get_client(write=True)))
        except Exception:  # not a redis-py client after all: the cache keeps its own flag
            return


# The outage attached, in which process: a forked worker gets a flag of its own.
_attached: tuple[RedisOutage, int] | None = None


def _usable() -> BaseCache | None:
    """The cache if it may be used now: enabled, not inside the back-off, and after a
    failure only once a probe write succeeded (one thread probes, the others skip)."""
    cache = _cache()
    if cache is None:
        return None
    if _attached is None or _attached[0] is not _outage or _attached[1] != os.getpid():
        _attach(cache)
    if not _outage.retry_due:
        return None
    if not _outage.connected:
        if not _outage.claim_probe():
            return None
        try:
            cache.set(PROBE_KEY, 1, 10)
        except Exception as exc:
            _outage.failed(exc)
            return None
        _outage.succeeded()
    return cache


def forget_outage() -> None:
    """Start again as connected (tests; also when the settings change)."""
    global _outage
    _outage = _new_outage()


@receiver(signals.settings_reloaded)
def _settings_reloaded(**kwargs: Any) -> None:
    forget_outage()


def _pack(provider: str, completion: Completion) -> dict[str, Any]:
    packed: dict[str, Any] = {"content": completion.content, "provider": provider,
                              "model": completion.model}
    if completion.tool_calls:
        packed["tool_calls"] = [{"id": c.id, "name": c.name, "arguments": c.arguments}
                                for c in completion.tool_calls]
    return packed


def remember(request: ChatRequest, provider: str, completion: Completion) -> None:
    cache = _usable()
    if cache is None:
        return
    try:
        cache.set(cache_key(request), _pack(provider, completion), get_settings().CACHE_TTL)
    except Exception as exc:
        _outage.failed(exc)


MAX_PENDING_WRITES = 64
#: How long the first answer of a batch waits for others before the batch is written:
#: one Redis write costs about 0.1 ms of CPU here (``bench/README.md``), as much as the
#: rest of a request's own work outside Django, and at one request at a time every
#: answer used to pay for one.
WRITE_DELAY_SECONDS = 0.02


class _Writer:
    """This process's answer writes, off the event loop: one thread, fed by a queue.

    The thread takes an answer, waits :data:`WRITE_DELAY_SECONDS` for others, and writes
    them all with one ``set_many`` (one round trip to Redis), the latest answer per key.
    It outlives any one event loop, so the answers of a loop that ends with its request
    (a sync caller through ``async_to_sync``, WSGI) are written too. When answers pile
    up (a slow or dead cache), new ones are dropped rather than queued without bound.
    """

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[tuple[str, dict[str, Any]]] = queue.SimpleQueue()
        self.pending = 0  # queued or being written
        self.idle = threading.Condition()
        self.hurry = False  # flush() asks: write without waiting for company
        threading.Thread(target=self._run, name="flexiai-cache-writer", daemon=True).start()

    def add(self, key: str, value: dict[str, Any]) -> None:
        with self.idle:
            if self.pending >= MAX_PENDING_WRITES:
                return
            self.pending += 1
        self.queue.put((key, value))

    def _run(self) -> None:
        while True:
            batch = dict([self.queue.get()])
            if not self.hurry:
                time.sleep(WRITE_DELAY_SECONDS)
            taken = 1
            with contextlib.suppress(queue.Empty):
                while True:
                    key, value = self.queue.get_nowait()
                    batch[key] = value
                    taken += 1
            try:
                _write_many(batch)
            finally:
                with self.idle:
                    self.pending -= taken
                    if not self.pending:
                        self.idle.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait until every answer added so far is written; False if ``timeout`` passed."""
        with self.idle:
            self.hurry = True
            try:
                return self.idle.wait_for(lambda: not self.pending, timeout)
            finally:
                self.hurry = False


_writer = PerProcess(_Writer)


def _write_many(batch: dict[str, dict[str, Any]]) -> None:
    cache = _usable()
    if cache is None:
        return
    try:
        cache.set_many(batch, get_settings().CACHE_TTL)
    except Exception as exc:
        _outage.failed(exc)


def remember_soon(request: ChatRequest, provider: str, completion: Completion) -> None:
    """From async code: queue the write and return at once.

    A fallback cache must never add latency to a good answer: a thread of its own writes
    it, batched with the answers of the next few milliseconds (see :class:`_Writer`).
    """
    if _cache() is None:
        return
    _writer.get().add(cache_key(request), _pack(provider, completion))


def flush(timeout: float = 10.0) -> bool:
    """Wait for the writes queued by :func:`remember_soon` (tests, graceful shutdown);
    False if ``timeout`` passed first."""
    writer = _writer.peek()
    return writer is None or writer.flush(timeout)


async def drain(timeout: float = 10.0) -> None:
    """:func:`flush` from async code."""
    await asyncio.to_thread(flush, timeout)


# A worker that exits normally writes what it still holds (at most the last 20 ms).
atexit.register(flush, 1.0)


def recall(request: ChatRequest) -> dict[str, Any] | None:
    cache = _usable()
    if cache is None:
        return None
    try:
        value: dict[str, Any] | None = cache.get(cache_key(request))
    except Exception as exc:
        _outage.failed(exc)
        return None
    return value


async def arecall(request: ChatRequest) -> dict[str, Any] | None:
    return await asyncio.get_running_loop().run_in_executor(None, recall, request)
