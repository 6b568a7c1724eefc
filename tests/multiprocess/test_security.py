"""Security promises that only real processes can show: proxies, bodies, workers."""

import httpx
import pytest

from flexiai_django.testing.nginx import NginxProxy

from .conftest import start

pytestmark = pytest.mark.slow
HELLO = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def laptop_site(seeded):
    """The demo's laptop setting (anonymous loopback) on the production server."""
    site = start("uvicorn", seeded, workers=2, FLEXIAI_ANONYMOUS_LOOPBACK="1")
    yield site
    site.stop()


def test_a_same_host_proxy_never_turns_a_remote_caller_into_loopback(laptop_site,
                                                                     nginx_executable):
    chat = f"{laptop_site.url}/v1/chat/completions"
    assert httpx.post(chat, json=HELLO, timeout=15).status_code == 200  # the laptop itself
    with NginxProxy([laptop_site.url]) as proxy:
        through = f"{proxy.url}/v1/chat/completions"
        relayed = httpx.post(through, json=HELLO, timeout=15)
        spoofed = httpx.post(through, json=HELLO, timeout=15,
                             headers={"X-Forwarded-For": "127.0.0.1"})
        demo = httpx.post(f"{proxy.url}/chat/direct", json={"message": "hi"}, timeout=15)
    assert [relayed.status_code, spoofed.status_code, demo.status_code] == [401, 401, 401]
    assert relayed.json()["error"]["code"] == "missing_api_key"


def test_a_sidecar_address_is_not_loopback(laptop_site):
    """Istio's sidecar connects from 127.0.0.6: bind a client there, the way it would."""
    transport = httpx.HTTPTransport(local_address="127.0.0.6")
    with httpx.Client(transport=transport, timeout=15) as client:
        response = client.post(f"{laptop_site.url}/v1/chat/completions", json=HELLO)
    assert response.status_code == 401


def test_an_oversized_body_is_refused_by_the_production_server(laptop_site):
    big = b'{"messages": [{"role": "user", "content": "' + b"x" * (3 << 20) + b'"}]}'
    declared = httpx.post(f"{laptop_site.url}/v1/chat/completions", content=big, timeout=15,
                          headers={"content-type": "application/json"})
    assert declared.status_code == 413

    def chunks():
        for _ in range(48):
            yield b"x" * (64 << 10)

    streamed = httpx.post(f"{laptop_site.url}/v1/chat/completions", content=chunks(),
                          timeout=15, headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    assert httpx.get(f"{laptop_site.url}/health/live", timeout=5).status_code == 200
