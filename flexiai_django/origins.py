"""Which web pages may open the status page's WebSocket: same origin or an allow-list.

Browsers send cookies with a WebSocket handshake whatever page opens it, and the
handshake is not subject to CORS, so the server must check ``Origin`` itself. Channels'
``AllowedHostsOriginValidator`` compares the host alone against ``ALLOWED_HOSTS`` (so
``ALLOWED_HOSTS = ["*"]`` admits every page on the web, and ``http://`` pages pass for an
``https://`` site). Here the whole origin counts (scheme, host and port), as Django's
CSRF check counts it:

* the socket's own origin: its ``Host`` (which must be in ``ALLOWED_HOSTS``) with
  ``https`` for ``wss`` (or ``SECURE_PROXY_SSL_HEADER``), ``http`` otherwise;
* or one of ``FLEXIAI["WEBSOCKET_ALLOWED_ORIGINS"]`` (default ``CSRF_TRUSTED_ORIGINS``),
  where ``https://*.example.com`` admits subdomains of example.com on that scheme/port.

A handshake without ``Origin`` (not a browser) is refused: the socket serves the admin
page only.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

from flexiai_django.conf import get_settings

DEFAULT_PORTS = {"http": 80, "https": 443}
Origin = tuple[str, str, int]


def parse_origin(value: str) -> Origin | None:
    """``(scheme, host, port)`` with the default port filled in; None if malformed."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def matches(origin: Origin, allowed: str) -> bool:
    """``allowed`` is an origin, or one with a ``*.`` subdomain wildcard."""
    wildcard = "://*." in allowed
    pattern = parse_origin(allowed.replace("://*.", "://", 1) if wildcard else allowed)
    if pattern is None:
        return False
    scheme, host, port = pattern
    if (origin[0], origin[2]) != (scheme, port):
        return False
    return origin[1].endswith("." + host) if wildcard else origin[1] == host


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin1"))
    return None


def _secure(scope: dict[str, Any]) -> bool:
    if scope.get("scheme") in ("wss", "https"):
        return True
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy:
        name, expected = proxy
        header = name.removeprefix("HTTP_").lower().replace("_", "-").encode()
        value = _header(scope, header)
        return value is not None and value.split(",")[0].strip() == expected
    return False


def own_origin(scope: dict[str, Any]) -> Origin | None:
    """The origin a page served by this host has, if the ``Host`` header is allowed."""
    host = _header(scope, b"host")
    if not host:
        return None
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    return parse_origin(("https://" if _secure(scope) else "http://") + host)


def allowed_origins() -> list[str]:
    configured = get_settings().WEBSOCKET_ALLOWED_ORIGINS
    return list(configured if configured is not None
                else getattr(settings, "CSRF_TRUSTED_ORIGINS", []))


def origin_allowed(scope: dict[str, Any]) -> bool:
    value = _header(scope, b"origin")
    origin = parse_origin(value) if value else None
    if origin is None:
        return False
    if origin == own_origin(scope):
        return True
    return any(matches(origin, allowed) for allowed in allowed_origins())


class OriginValidator:
    """ASGI middleware: refuse a WebSocket handshake from a page not allowed above.

    Wrap the WebSocket router with it in place of ``AllowedHostsOriginValidator``.
    """

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
