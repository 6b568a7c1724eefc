"""The status page's socket under the production command (gunicorn + uvicorn workers)."""

import json

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from flexiai_django.routing import STATUS_SOCKET_PATH
from flexiai_django.testing.live_site import LiveSite

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory, _fake_upstream_server):
    # ALLOWED_HOSTS "*": the Origin check must not lean on it (it admits every host).
    with LiveSite(tmp_path_factory.mktemp("socket-site"), _fake_upstream_server,
                  env={"DJANGO_ALLOWED_HOSTS": "*"}) as live:
        yield live


def open_socket(site, who=None):
    headers = {"Origin": site.api.url}
    if who is not None:
        cookie = site.session_cookie(who)
        headers["Cookie"] = f"{cookie['name']}={cookie['value']}"
    url = site.api.url.replace("http://", "ws://") + "/" + STATUS_SOCKET_PATH
    return connect(url, additional_headers=headers, open_timeout=10)


def next_of(ws, kind):
    while True:
        message = json.loads(ws.recv(timeout=10))
        if message["type"] == kind:
            return message


def test_an_operator_gets_the_snapshot_and_live_events_from_a_uvicorn_worker(site):
    site.force("demo-primary", "closed")
    with open_socket(site, "operator") as ws:
        snapshot = next_of(ws, "snapshot")
        assert {p["name"] for p in snapshot["providers"]} >= {"demo-primary", "demo-secondary"}
        site.force("demo-primary", "forced_open")  # a third process
        event = next_of(ws, "breaker")
        assert (event["breaker"], event["state"]["state"]) == ("llm:demo-primary", "forced_open")
    site.force("demo-primary", "closed")


@pytest.mark.parametrize("who", [None, "member", "staff"])
def test_anonymous_non_staff_and_permissionless_staff_sockets_are_refused(site, who):
    with pytest.raises(InvalidStatus) as refused:
        open_socket(site, who)
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize("origin", [
    "http://evil.example",
    "https://127.0.0.1:{port}",  # the right host and port, the wrong scheme
    "http://127.0.0.1:1",        # the right host, another port
    "http://localhost:{port}",   # an allowed host, not this page's
])
def test_a_socket_from_another_origin_is_refused(site, origin):
    cookie = site.session_cookie("operator")
    url = site.api.url.replace("http://", "ws://") + "/" + STATUS_SOCKET_PATH
    with pytest.raises(InvalidStatus) as refused:
        connect(url, additional_headers={"Origin": origin.format(port=site.api.port),
                                         "Cookie": f"{cookie['name']}={cookie['value']}"},
                open_timeout=10)
    assert refused.value.response.status_code == 403
