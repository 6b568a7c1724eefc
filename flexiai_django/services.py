"""The public API: ``chat``/``achat``, ``stream``/``astream`` and the ``llm`` decorator."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ParamSpec, TypeAlias, overload

from flexiai_django import chain, streams
from flexiai_django.chat_stream import AsyncChatStream, ChatStream
from flexiai_django.chat_types import ChatRequest, ChatResult, Message
from flexiai_django.validation import chat_request

P = ParamSpec("P")
Messages: TypeAlias = str | Sequence[Message | dict[str, Any]]


def chat(messages: Messages, **params: Any) -> ChatResult:
    """Ask the providers in turn; fall back to the cache and degraded tiers.

    ``messages`` is a prompt string or OpenAI-style message dicts (tool calls, tool
    results and image parts included); ``params`` are ``model`` (a provider name or
    model id to route to), OpenAI's request fields in OpenAI's shapes (``temperature``,
    ``max_tokens``, ``top_p``, ``stop``, ``user``, ``tools``, ``tool_choice``,
    ``response_format``, ``seed``… see :attr:`ChatRequest.PARAMS`) and ``cache_scope``
    (whose cached answers the cache tier may give back: pass the user's id in
    multi-tenant code; ``""``, the default, shares them). The result carries
    ``tool_calls`` when the model calls a tool. Raises ``TypeError`` for a misspelt
    keyword, :class:`~flexiai_django.validation.InvalidRequest` (a ``ValueError``) for a
    bad value, :class:`~flexiai_django.errors.NoProviderAvailable` when every tier fails,
    :class:`~flexiai_django.errors.UnsupportedParameters` when no provider can carry a
    field, and :class:`~flexiai_django.errors.BadRequest` when a provider rejects the
    request.

    Never hedged, even for an alias in ``HEDGED_ALIASES``: a call blocking this thread
    cannot be cancelled, so only :func:`achat` and :func:`astream` hedge.
    """
    return chain.complete(chat_request(messages, **params))


async def achat(messages: Messages, **params: Any) -> ChatResult:
    """:func:`chat` for async code: no thread, no blocking call on the hot path.

    For a model alias in ``HEDGED_ALIASES``, a first provider slower than its recent p95
    gets company: the next provider starts too and the first answer wins
    (:mod:`flexiai_django.hedging`)."""
    return await chain.acomplete(chat_request(messages, **params))


def stream(messages: Messages, **params: Any) -> ChatStream:
    """Text pieces as they arrive. Failover happens before this returns. Never hedged
    (see :func:`chat`)."""
    return streams.open_stream(chat_request(messages, **params))


async def astream(messages: Messages, **params: Any) -> AsyncChatStream:
    """``async for piece in await astream(...)``; hedged like :func:`achat` (the first
    stream to yield a piece of the answer wins)."""
    return await streams.aopen_stream(chat_request(messages, **params))


def _with_system(prompt: Any, system: str | None) -> Messages:
    messages: list[Message | dict[str, Any]] = (
        [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    )
    if system:
        messages.insert(0, {"role": "system", "content": system})
    return messages


@overload
def llm(fn: Callable[P, Awaitable[Messages]], /) -> Callable[P, Awaitable[ChatResult]]: ...
@overload
def llm(fn: Callable[P, Messages], /) -> Callable[P, ChatResult]: ...
@overload
def llm(
    fn: None = None, /, *, system: str | None = None, **params: Any
) -> Callable[[Callable[P, Any]], Callable[P, Any]]: ...


def llm(fn: Callable[P, Any] | None = None, /, *, system: str | None = None,
        **params: Any) -> Any:
    """Turn a function that returns a prompt into a resilient LLM call.

    ``@llm`` or ``@llm(system="…", temperature=0.2)`` on a sync function returns a
    :class:`ChatResult`; on an ``async def`` it returns an awaitable of one. ``params``
    are :func:`chat`'s; a misspelt one raises ``TypeError`` here, when decorating.
    """
    ChatRequest.check_params(params)

    def decorate(func: Callable[P, Any]) -> Callable[P, Any]:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_call(*args: P.args, **kwargs: P.kwargs) -> ChatResult:
                return await achat(_with_system(await func(*args, **kwargs), system), **params)

            return async_call

        @functools.wraps(func)
        def call(*args: P.args, **kwargs: P.kwargs) -> ChatResult:
            return chat(_with_system(func(*args, **kwargs), system), **params)

        return call

    return decorate if fn is None else decorate(fn)
