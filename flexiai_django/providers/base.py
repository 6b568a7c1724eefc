"""The adapter base class: one provider API, spoken over httpx, sync and async.

A subclass fills in four hooks and inherits the transport, timeouts, streaming and
the error taxonomy:

* :meth:`ProviderAdapter.headers` — auth and version headers;
* :meth:`ProviderAdapter.payload` — the request body for this API;
* :meth:`ProviderAdapter.parse` — a decoded JSON reply into a :class:`Completion`;
* :meth:`ProviderAdapter.parse_event` — one streamed event into a :class:`StreamDelta`.

and declares which optional request fields it can carry (:attr:`ProviderAdapter.honours`):
the chain does not send a request to a provider that would lose part of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx
import orjson

from flexiai_django import overhead
from flexiai_django.breakers.state import BreakerConfig
from flexiai_django.chat_types import ChatRequest, Completion, StreamDelta
from flexiai_django.errors import (
    BadRequest,
    ContextLengthExceeded,
    MalformedReply,
    ProviderAuthError,
    ProviderError,
    RateLimited,
    UpstreamConnectionError,
    UpstreamServerError,
    UpstreamTimeout,
)
from flexiai_django.redaction import redact
from flexiai_django.retries import retry_after_seconds

from .clients import direct_post
from .deadline_io import BoundedByteStream, DeadlineTimeouts, bounded_reads
from .rejections import is_context_length
from .stream_clock import StreamClock
from .stream_events import StreamEvents

BREAKER_PREFIX = "llm:"
#: A participant name on a message (OpenAI's ``name``): what ``unsupported`` calls it.
MESSAGE_NAME = "messages[].name"
#: Characters of an upstream's own error message passed on (after redaction).
UPSTREAM_MESSAGE_LIMIT = 300


def breaker_name_for(provider: str) -> str:
    """Each provider's breaker is named after it; other breakers (``breaker("x")``) are not."""
    return BREAKER_PREFIX + provider


def provider_of(breaker: str) -> str | None:
    """The provider a breaker belongs to, or None for a generic breaker."""
    return breaker[len(BREAKER_PREFIX):] if breaker.startswith(BREAKER_PREFIX) else None


@dataclass(frozen=True)
class ProviderConfig:
    """An immutable snapshot of one provider row, safe to share across threads."""

    name: str
    kind: str
    base_url: str
    model: str
    api_key: str = field(default="", repr=False)
    priority: int = 100
    weight: int = 1
    timeout: float = 30.0
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    #: Same-provider retries of a transient failure (429, 5xx, reset before any byte).
    max_retries: int = 1
    #: Seconds a stream may take to its first token / stay silent (None: no limit).
    first_token_timeout: float | None = None
    stall_timeout: float | None = None
    #: Tokens the model accepts, prompt and answer (None: unknown, never skipped).
    context_window: int | None = None
    #: A routing label (``large``, ``small``, ...); "" for none.
    tier: str = ""
    #: Concurrent requests across the deployment (None: unlimited).
    capacity: int | None = None
    #: A cold model: no traffic (or the warming trickle) until a warm-up probe answers.
    warming: bool = False

    @property
    def breaker_name(self) -> str:
        return breaker_name_for(self.name)


class ProviderAdapter:
    """Base class of every provider kind. Instances are cheap; clients are pooled elsewhere."""

    kind: ClassVar[str] = ""
    default_base_url: ClassVar[str] = ""
    chat_path: ClassVar[str] = ""
    #: "sse" for ``data:`` events, "ndjson" for one JSON object per line.
    stream_format: ClassVar[str] = "sse"
    #: The optional fields (names from :meth:`ChatRequest.options_set`) this kind carries.
    honours: ClassVar[frozenset[str]] = frozenset()
    #: Takes a final assistant turn as the start of its answer (a *prefill*): a broken
    #: stream is continued here by sending the text so far that way; otherwise with the
    #: text so far and an instruction to continue (:mod:`flexiai_django.continuation`).
    prefill: ClassVar[bool] = False

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config

    # -- hooks -------------------------------------------------------------------------

    def headers(self) -> dict[str, str]:
        """Headers for every call: authentication (from ``self.config.api_key``, which
        is never logged) and API version headers. Default: none."""
        return {}

    def payload(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        """The JSON body this API wants for ``request``.

        Args:
            request: the provider-neutral request; translate every field this kind
                lists in :attr:`honours` (the chain never sends the others here).
            stream: whether the body must ask for a streamed answer.
        """
        raise NotImplementedError

    def parse(self, data: Any) -> Completion:
        """Turn the decoded JSON reply into a :class:`Completion`.

        Raises:
            KeyError, TypeError, IndexError, ValueError: the reply is malformed; the
                machinery turns them into :class:`MalformedReply`, a breaker failure.
        """
        raise NotImplementedError

    def parse_event(self, event: str | None, data: str) -> StreamDelta | None:
        """One streamed event (``event`` is the SSE event name, or ``None``).

        Returns ``None`` to skip it, and ``StreamDelta(final=True)`` for the end marker:
        a stream that ends without one is a truncated reply. Raises like :meth:`parse`.
        """
        raise NotImplementedError

    def parse_reply(self, data: Any, request: ChatRequest) -> Completion:
        """:meth:`parse`, for a kind whose reply reads differently by request (Anthropic's
        JSON answer given as a forced tool's input)."""
        return self.parse(data)

    def event_parser(self, request: ChatRequest) -> Callable[[str | None, str],
                                                             StreamDelta | None]:
        """What parses one stream's events: :meth:`parse_event`, or a fresh stateful
        parser for a kind whose events refer to earlier ones (Anthropic's block indexes)."""
        return self.parse_event

    def unsupported(self, request: ChatRequest) -> tuple[str, ...]:
        """The request's fields this kind cannot carry, so the chain can skip it or say so."""
        missing = tuple(name for name in request.options_set() if name not in self.honours)
        if MESSAGE_NAME not in self.honours and any(m.name for m in request.messages):
            missing += (MESSAGE_NAME,)
        return missing

    # -- machinery -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return (self.config.base_url or self.default_base_url).rstrip("/") + self.chat_path

    def _request_args(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        """What httpx sends, but its timeouts: each call says how it bounds its waits."""
        return {
            "url": self.url,
            "content": orjson.dumps(self.payload(request, stream=stream)),
            "headers": {"content-type": "application/json", **self.headers()},
        }

    def _error(self, exc: Exception, *, replied: bool = False) -> ProviderError:
        """Map a transport or decoding exception to the taxonomy, without leaking details.

        ``replied``: the upstream had begun its reply (a lost connection then is not
        retried: the provider may have done the work).
        """
        name = self.config.name
        if isinstance(exc, ProviderError):
            return exc
        if isinstance(exc, httpx.TimeoutException | TimeoutError):
            return UpstreamTimeout(f"no reply within {self.config.timeout:g}s", provider=name)
        if isinstance(exc, httpx.TransportError):
            return UpstreamConnectionError(
                f"connection failed ({type(exc).__name__})", provider=name, replied=replied
            )
        return MalformedReply(f"unreadable reply ({type(exc).__name__})", provider=name)

    def check_status(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        """Raise the taxonomy's error for a non-2xx status."""
        if 200 <= status < 300:
            return
        name = self.config.name
        retry_after = _retry_after(headers)
        if status == 429:
            raise RateLimited("rate limited (HTTP 429)", provider=name, status=status,
                              retry_after=retry_after)
        if status in (400, 413, 422):
            refusal = ContextLengthExceeded if is_context_length(body) else BadRequest
            raise refusal(
                f"provider rejected the request (HTTP {status}): {self._upstream_message(body)}",
                provider=name,
                status=status,
            )
        if status in (401, 402, 403, 404):
            raise ProviderAuthError(
                f"provider refused our credentials, billing or model (HTTP {status})",
                provider=name,
                status=status,
            )
        raise UpstreamServerError(
            f"upstream error (HTTP {status})", provider=name, status=status,
            retry_after=retry_after,
        )

    def _upstream_message(self, body: bytes) -> str:
        """The upstream's own explanation of a bad request, with secrets removed, then cut.

        Redacting first matters: cutting first could leave a partial key that no longer
        matches it; upstreams also quote keys re-cased or in their own masked form.
        """
        try:
            data = orjson.loads(body)
            err = data.get("error", data) if isinstance(data, dict) else data
            message = err.get("message", "") if isinstance(err, dict) else str(err)
        except (orjson.JSONDecodeError, AttributeError):
            message = ""
        return redact(str(message), [self.config.api_key], limit=UPSTREAM_MESSAGE_LIMIT) or (
            "no details")

    def _completion(self, body: bytes, request: ChatRequest) -> Completion:
        try:
            return self.parse_reply(orjson.loads(body), request)
        except (orjson.JSONDecodeError, KeyError, TypeError, IndexError, ValueError,
                AttributeError) as exc:
            raise MalformedReply(
                f"malformed reply ({type(exc).__name__})", provider=self.config.name
            ) from None

    def complete(self, client: httpx.Client, request: ChatRequest) -> Completion:
        """One whole answer, within the provider's ``timeout``.

        The first-token and stall limits are for streams only: an OpenAI-style server sends
        nothing for a plain call until the whole answer is ready, so a first-token limit
        would cut every long answer. A plain call keeps the provider's ``timeout``.
        """
        deadline = time.monotonic() + self.config.timeout
        replied = False
        try:
            args = self._request_args(request, stream=False)
            with client.stream("POST", **args, timeout=self.config.timeout) as response:
                replied = True
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if time.monotonic() > deadline:
                        raise TimeoutError
        except Exception as exc:
            raise self._error(exc, replied=replied) from None
        self.check_status(response.status_code, response.headers, bytes(body))
        return self._completion(bytes(body), request)

    async def acomplete(self, client: httpx.AsyncClient, request: ChatRequest) -> Completion:
        """:meth:`complete` for async code (no first-token limit either)."""
        replied = False

        def on_reply() -> None:
            nonlocal replied
            replied = True

        try:
            async with asyncio.timeout(self.config.timeout):
                args = self._request_args(request, stream=False)
                direct = direct_post(client)
                with overhead.upstream():
                    if direct is not None:
                        status, headers, body = await direct.apost(**args, on_reply=on_reply)
                    else:
                        status, headers, body = await self._asend(client, args, on_reply)
        except Exception as exc:
            raise self._error(exc, replied=replied) from None
        self.check_status(status, headers, body)
        return self._completion(body, request)

    async def _asend(self, client: httpx.AsyncClient, args: dict[str, Any],
                     on_reply: Callable[[], None]) -> tuple[int, httpx.Headers, bytes]:
        response = await client.send(
            client.build_request("POST", **args, timeout=self.config.timeout), stream=True)
        on_reply()
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response.status_code, response.headers, response.content

    def _clock(self) -> StreamClock:
        config = self.config
        return StreamClock(timeout=config.timeout, first_token=config.first_token_timeout,
                           stall=config.stall_timeout, now=time.monotonic())

    def _stream_error(self, exc: Exception, clock: StreamClock, replied: bool) -> ProviderError:
        """:meth:`_error`, naming the limit that cut the stream when one did."""
        if isinstance(exc, httpx.TimeoutException | TimeoutError) and clock.limited:
            return clock.error(self.config.name)
        return self._error(exc, replied=replied)

    def stream(self, client: httpx.Client, request: ChatRequest) -> Iterator[StreamDelta]:
        """Deltas until the final one; any failure raises a ProviderError.

        Unlike :meth:`complete`, a stream is held to the provider's ``first_token_timeout``
        (until its first substantive delta) and ``stall_timeout`` (between deltas after it):
        see :mod:`flexiai_django.providers.stream_clock`. Raises :class:`FirstTokenTimeout`
        or :class:`StreamStalled` (both breaker failures); the response is closed, never
        returned to the pool half-read.
        """
        clock = self._clock()
        events = StreamEvents(self.config.name, self.stream_format, self.event_parser(request))
        args = self._request_args(request, stream=True)
        replied = False
        try:
            with client.stream("POST", **args,
                               extensions={"timeout": DeadlineTimeouts(clock)}) as response:
                replied = True
                if response.status_code >= 300:
                    self.check_status(response.status_code, response.headers, response.read())
                with bounded_reads(response, clock) as reader:
                    for line in response.iter_lines():
                        if events.final is not None:
                            continue  # after the end marker, drain: the connection is reused
                        if clock.expired(time.monotonic()):
                            raise clock.error(self.config.name)
                        for delta in events.feed(line):
                            clock.heard(delta)
                            yield delta
                            reader.claim()
                            clock.resumed(time.monotonic())
                        if events.final is not None:
                            clock.done()
        except Exception as exc:
            raise self._stream_error(exc, clock, replied) from None
        yield events.end()

    async def astream(
        self, client: httpx.AsyncClient, request: ChatRequest
    ) -> AsyncIterator[StreamDelta]:
        """:meth:`stream` for async code: each wait (for the headers, then for each network
        read of the body) is bounded with ``asyncio.timeout``."""
        clock = self._clock()
        events = StreamEvents(self.config.name, self.stream_format, self.event_parser(request))
        replied = False
        wait = overhead.StreamWait()
        wait.begin()
        try:
            async with contextlib.AsyncExitStack() as stack:
                async with asyncio.timeout(clock.wait(time.monotonic())):
                    resp = await stack.enter_async_context(client.stream(
                        "POST", **self._request_args(request, stream=True),
                        timeout=self.config.timeout))
                replied = True
                if resp.status_code >= 300:
                    self.check_status(resp.status_code, resp.headers, await resp.aread())
                assert isinstance(resp.stream, httpx.AsyncByteStream)
                resp.stream = BoundedByteStream(resp.stream, clock)
                async for line in resp.aiter_lines():
                    if events.final is not None:
                        continue  # after the end marker, drain: the connection is reused
                    if clock.expired(time.monotonic()):
                        raise clock.error(self.config.name)
                    for delta in events.feed(line):
                        clock.heard(delta)
                        if clock.answering:
                            wait.end()
                        yield delta
                        clock.resumed(time.monotonic())
                    if events.final is not None:
                        clock.done()
        except Exception as exc:
            raise self._stream_error(exc, clock, replied) from None
        finally:
            wait.end()
        yield events.end()


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the provider asks us to wait: its ``Retry-After``, in seconds or a date."""
    value = headers.get("retry-after")
    return None if value is None else retry_after_seconds(value, time.time())
