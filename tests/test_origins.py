"""The status socket's Origin check: scheme, host and port, never just the host."""

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import override_settings

from flexiai_django.origins import OriginValidator, matches, origin_allowed, parse_origin
from flexiai_django.routing import STATUS_SOCKET_PATH, websocket_urlpatterns


def handshake(origin, host="flexiai.example.com", scheme="ws", **extra):
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    headers += [(k.replace("_", "-").encode(), v.encode()) for k, v in extra.items()]
    return {"type": "websocket", "scheme": scheme, "headers": headers}


@override_settings(ALLOWED_HOSTS=["flexiai.example.com"], CSRF_TRUSTED_ORIGINS=[])
@pytest.mark.parametrize(("scope", "allowed"), [
    (handshake("http://flexiai.example.com"), True),
    (handshake("https://flexiai.example.com", scheme="wss"), True),
    (handshake("http://flexiai.example.com:8000", host="flexiai.example.com:8000"), True),
    (handshake("http://flexiai.example.com:8001", host="flexiai.example.com:8000"), False),
    (handshake("http://flexiai.example.com", scheme="wss"), False),   # http page, TLS site
    (handshake("https://flexiai.example.com"), False),                # claims TLS, plain socket
    (handshake("http://evil.example"), False),
    (handshake("http://flexiai.example.com.evil.example"), False),
    (handshake(None), False),                                         # not a browser
    (handshake("null"), False),
    (handshake("http://evil.example", host="evil.example"), False),   # host not allowed
])
def test_only_the_sites_own_origin_is_allowed_by_default(scope, allowed):
    assert origin_allowed(scope) is allowed


@override_settings(ALLOWED_HOSTS=["*"], CSRF_TRUSTED_ORIGINS=[])
def test_allowed_hosts_star_does_not_admit_every_origin():
    assert not origin_allowed(handshake("https://evil.example", scheme="wss"))
    assert origin_allowed(handshake("https://flexiai.example.com", scheme="wss"))


@override_settings(ALLOWED_HOSTS=["app"], SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO",
                                                                   "https"))
def test_behind_a_tls_proxy_the_forwarded_scheme_counts():
    assert origin_allowed(handshake("https://app", host="app", x_forwarded_proto="https"))
    assert not origin_allowed(handshake("https://app", host="app"))


@override_settings(ALLOWED_HOSTS=["internal"],
                   CSRF_TRUSTED_ORIGINS=["https://ops.example.com", "https://*.corp.example"])
def test_trusted_origins_are_allowed_with_their_scheme_and_port():
    assert origin_allowed(handshake("https://ops.example.com", host="internal"))
    assert origin_allowed(handshake("https://eu.corp.example", host="internal"))
    assert not origin_allowed(handshake("http://ops.example.com", host="internal"))
    assert not origin_allowed(handshake("https://ops.example.com:8443", host="internal"))
    assert not origin_allowed(handshake("https://corp.example.evil", host="internal"))
    with override_settings(FLEXIAI={"WEBSOCKET_ALLOWED_ORIGINS": ["https://noc.example.com"]}):
        assert origin_allowed(handshake("https://noc.example.com", host="internal"))
        assert not origin_allowed(handshake("https://ops.example.com", host="internal"))


def test_origins_compare_with_default_ports_filled_in():
    assert parse_origin("https://a.example") == ("https", "a.example", 443)
    assert parse_origin("http://[::1]:8000") == ("http", "::1", 8000)
    assert parse_origin("ftp://a.example") is None and parse_origin("https://a/x") is None
    assert matches(("https", "a.example", 443), "https://a.example:443")


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
@override_settings(ALLOWED_HOSTS=["*"], CSRF_TRUSTED_ORIGINS=[])
async def test_a_staff_users_socket_from_a_foreign_page_is_refused():
    from asgiref.sync import sync_to_async

    staff = await sync_to_async(User.objects.create_superuser)("boss", "b@example.com", "pw")
    app = OriginValidator(URLRouter(websocket_urlpatterns))
    for origin, opened in (("http://evil.example", False), ("http://testserver", True)):
        communicator = WebsocketCommunicator(app, "/" + STATUS_SOCKET_PATH,
                                             headers=[(b"origin", origin.encode()),
                                                      (b"host", b"testserver")])
        communicator.scope["user"] = staff
        ok, _ = await communicator.connect(timeout=5)
        assert ok is opened
        await communicator.disconnect()
