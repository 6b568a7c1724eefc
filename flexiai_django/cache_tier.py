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
import hashlib
import os
import weakref
from typing import Any

import orjson
from django.core.cache import BaseCache, caches
from django.dispatch import receiver

from flexiai_django import signals
from flexiai_django.chat_types import ChatRequest, Completion, Message
from flexiai_django.conf import get_settings
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
#: How long the first answer of a batch waits for others before it is written: one
#: Redis write costs about 0.1 ms of CPU here (``bench/README.md``), as much as the rest
#: of a request's own work outside Django, and at one request at a time every answer
#: used to pay for one.
WRITE_DELAY_SECONDS = 0.02


class _Writer:
    """One event loop's answer writes: batched, at most one batch in a worker thread.

    An answer waits in ``queued`` (the latest answer per key) up to
    :data:`WRITE_DELAY_SECONDS`, or until the batch in flight is written, and goes with
    the others in one ``set_many`` (one round trip to Redis) and one thread hand-off:
    the writes cost a fraction of a hand-off per request instead of one each.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queued: dict[str, dict[str, Any]] = {}
        self.flight: asyncio.Future[None] | None = None
        self.timer: asyncio.TimerHandle | None = None

    def add(self, key: str, value: dict[str, Any]) -> None:
        if key not in self.queued and len(self.queued) >= MAX_PENDING_WRITES:
            return  # a slow or dead cache: drop rather than queue without bound
        self.queued[key] = value
        self._schedule()

    def _schedule(self) -> None:
        if self.flight is None and self.timer is None and self.queued:
            self.timer = self.loop.call_later(WRITE_DELAY_SECONDS, self.start)

    def start(self) -> None:
        """Write what is queued now (the delay is up, or :func:`drain` asks)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.flight is not None or not self.queued:
            return
        batch, self.queued = self.queued, {}
        self.flight = self.loop.run_in_executor(None, _write_many, batch)
        self.flight.add_done_callback(self._done)

    def _done(self, future: asyncio.Future[None]) -> None:
        self.flight = None
        self._schedule()


_writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Writer] = (
    weakref.WeakKeyDictionary()
)


def _write_many(batch: dict[str, dict[str, Any]]) -> None:
    cache = _usable()
    if cache is None:
        return
    try:
        cache.set_many(batch, get_settings().CACHE_TTL)
    except Exception as exc:
        _outage.failed(exc)


def remember_soon(request: ChatRequest, provider: str, completion: Completion) -> None:
    """From async code: write in a worker thread and return at once.

    A fallback cache must never add latency to a good answer: the write is done by a
    worker thread, batched with the answers of the next few milliseconds (see
    :class:`_Writer`); if writes pile up (a slow or dead cache), new ones are dropped
    rather than queued without bound.
    """
    if _cache() is None:
        return
    loop = asyncio.get_running_loop()
    writer = _writers.get(loop)
    if writer is None:
        writer = _writers[loop] = _Writer(loop)
    writer.add(cache_key(request), _pack(provider, completion))


async def drain() -> None:
    """Wait for writes started by :func:`remember_soon` (tests, graceful shutdown)."""
    writer = _writers.get(asyncio.get_running_loop())
    while writer is not None and (writer.flight is not None or writer.queued):
        writer.start()
        if writer.flight is not None:
            await writer.flight


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
