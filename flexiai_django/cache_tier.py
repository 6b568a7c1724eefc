"""The cache tier: the last good answer for the same normalised request.

Written after every provider answer, read only when every provider failed. A broken
cache backend is logged and treated as a miss: a fallback must never add an outage.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

import orjson
from django.core.cache import BaseCache, caches

from flexiai_django.conf import get_settings
from flexiai_django.types import ChatRequest, Completion

logger = logging.getLogger("flexiai_django")
PREFIX = "flexiai:answer:"


def cache_key(request: ChatRequest) -> str:
    """Same messages (role + whitespace-trimmed content) and same model route → same key."""
    normalised = {
        "model": request.model or "",
        "messages": [[m.role, " ".join(m.content.split())] for m in request.messages],
    }
    digest = hashlib.sha256(orjson.dumps(normalised)).hexdigest()
    return PREFIX + digest


def _cache() -> BaseCache | None:
    s = get_settings()
    return caches[s.CACHE_ALIAS] if s.CACHE_ENABLED else None


def _pack(provider: str, completion: Completion) -> dict[str, Any]:
    return {"content": completion.content, "provider": provider, "model": completion.model}


def remember(request: ChatRequest, provider: str, completion: Completion) -> None:
    cache = _cache()
    if cache is None:
        return
    try:
        cache.set(cache_key(request), _pack(provider, completion), get_settings().CACHE_TTL)
    except Exception as exc:
        logger.warning("answer cache write failed: %s", type(exc).__name__)


_pending: set[asyncio.Future[None]] = set()
MAX_PENDING_WRITES = 64


def remember_soon(request: ChatRequest, provider: str, completion: Completion) -> None:
    """From async code: write in a worker thread and return at once.

    A fallback cache must never add latency to a good answer; if writes pile up (a slow
    or dead cache), new ones are dropped rather than queued without bound.
    """
    if _cache() is None or len(_pending) >= MAX_PENDING_WRITES:
        return
    future = asyncio.get_running_loop().run_in_executor(None, remember, request, provider,
                                                        completion)
    _pending.add(future)
    future.add_done_callback(_pending.discard)


async def drain() -> None:
    """Wait for writes started by :func:`remember_soon` (tests, graceful shutdown)."""
    if _pending:
        await asyncio.gather(*_pending)


def recall(request: ChatRequest) -> dict[str, Any] | None:
    cache = _cache()
    if cache is None:
        return None
    try:
        value: dict[str, Any] | None = cache.get(cache_key(request))
    except Exception as exc:
        logger.warning("answer cache read failed: %s", type(exc).__name__)
        return None
    return value


async def arecall(request: ChatRequest) -> dict[str, Any] | None:
    return await asyncio.get_running_loop().run_in_executor(None, recall, request)
