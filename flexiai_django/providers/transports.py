"""Optional httpx transports, for the ``ASYNC_TRANSPORT`` setting.

``aiohttp_transport`` keeps httpx as the API (``httpx.AsyncClient``, its requests,
responses, timeouts and exception classes) and moves the wire work to aiohttp through
the ``httpx-aiohttp`` package (``pip install 'flexiai-django[aiohttp]'``, included in
the ``server`` extra). On this project's 2-core machine a POST to a loopback upstream
cost about 0.55–0.9 ms of CPU through it against 1.2–1.6 ms sequentially and 2.3–3.7 ms
at 32 concurrent calls through httpx's own transport (``bench/README.md``)::

    FLEXIAI = {"ASYNC_TRANSPORT": "flexiai_django.providers.transports.aiohttp_transport"}

Whole (non-streaming) answers skip httpx's models and go straight through aiohttp
(:meth:`AiohttpTransport.apost`, found by the adapters through
:func:`flexiai_django.providers.clients.direct_post`); streams keep httpx's API.

aiohttp's exceptions are raised as the httpx exceptions httpx's own transport raises in
the same situation (``httpx-aiohttp`` maps some of them differently, e.g. a reset
connection to ``ConnectTimeout``), so breakers, failover and error kinds do not depend
on the transport.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport as _AiohttpTransport

# Most specific first: the first class the aiohttp exception is an instance of wins.
_MAP: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (TimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),
    (aiohttp.ClientOSError, httpx.ReadError),
    (aiohttp.ClientConnectionError, httpx.ReadError),
    (aiohttp.ClientError, httpx.TransportError),
)


def _as_httpx(exc: BaseException) -> httpx.TransportError | None:
    """The httpx exception for an aiohttp one (raised bare or wrapped by httpx-aiohttp)."""
    original = exc.__cause__ if isinstance(exc, httpx.TransportError) else exc
    for source, target in _MAP:
        if isinstance(original, source):
            return target(str(original) or type(original).__name__)
    return None


@contextmanager
def _mapped() -> Iterator[None]:
    try:
        yield
    except (aiohttp.ClientError, TimeoutError, httpx.TransportError) as exc:
        mapped = _as_httpx(exc)
        if mapped is None:
            raise
        raise mapped from exc


class _Stream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped():
            async for chunk in self._inner:
                yield chunk

    async def aclose(self) -> None:
        with _mapped():
            await self._inner.aclose()


class AiohttpTransport(_AiohttpTransport):
    """``httpx_aiohttp.AiohttpTransport`` raising httpx's own exception classes.

    Its session keeps no cookies: a gateway must not send one caller's upstream cookie
    with the next caller's request.
    """

    def get_client(self) -> aiohttp.ClientSession:
        if self.client is not None:
            return super().get_client()
        connector = aiohttp.TCPConnector(limit=self.limits.max_connections or 0,
                                         keepalive_timeout=self.limits.keepalive_expiry,
                                         ssl=self.ssl_context)
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())

    async def apost(self, url: str, headers: Mapping[str, str], content: bytes,
                    on_reply: Callable[[], None]) -> tuple[int, Mapping[str, str], bytes]:
        """One whole POST straight through aiohttp: status, headers and decoded body;
        ``on_reply`` is called once the reply has begun (headers received).

        The non-streaming hot path: httpx's request and response models around aiohttp
        cost about 0.3 ms of CPU per call here (``bench/README.md``), more than aiohttp's
        own work. The caller bounds the whole call (``asyncio.timeout``).
        """
        if not isinstance(self.client, aiohttp.ClientSession):
            self.client = self.get_client()
        with _mapped():
            async with self.client.post(url, headers=headers, data=content,
                                        allow_redirects=False) as response:
                on_reply()
                return response.status, response.headers, await response.read()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with _mapped():
            response = await super().handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Stream(response.stream)
        return response


def aiohttp_transport() -> AiohttpTransport:
    """``ASYNC_TRANSPORT`` factory: the pool limits of the default httpx clients."""
    from flexiai_django.providers.clients import _LIMITS

    return AiohttpTransport(limits=_LIMITS)
