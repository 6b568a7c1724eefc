"""The admin and the live status page are styled under a real server with DEBUG off.

The demo settings themselves (``flexiai_site.settings``), as the README's production
steps run them: ``collectstatic``, then gunicorn with uvicorn workers; WhiteNoise serves
the collected, hashed files from the app. The alternative, nginx serving the same
directory (``location /static/`` in ``deploy/nginx.conf``), is tested in front of it.
"""

import os
import re
import secrets

import httpx
import pytest

from flexiai_django.testing.nginx import INSTALL_HINT, NginxProxy, find_nginx
from flexiai_django.testing.servers import manage

from .conftest import site_env, start

pytestmark = [pytest.mark.slow]
DEMO_SETTINGS = {"DJANGO_SETTINGS_MODULE": "flexiai_site.settings"}
STATUS_PAGE = "/admin/flexiai_django/status/"
PASSWORD = secrets.token_urlsafe(12)
_CREATE_ADMIN = ("from django.contrib.auth import get_user_model; "
                 "get_user_model().objects.create_superuser('ops', password={!r})")


@pytest.fixture(scope="module")
def production(seeded, tmp_path_factory):
    """``collectstatic`` then a gunicorn + uvicorn site, DEBUG off, the demo settings."""
    static_root = tmp_path_factory.mktemp("static")
    env = {**DEMO_SETTINGS, "DJANGO_DEBUG": "0", "DJANGO_STATIC_ROOT": str(static_root)}
    manage("collectstatic", "--noinput", "-v0", env={**site_env(seeded), **env})
    manage("shell", "-c", _CREATE_ADMIN.format(PASSWORD), env={**site_env(seeded), **env})
    server = start("uvicorn", seeded, workers=1, **env)
    try:
        yield server, static_root
    finally:
        server.stop()


def assets(html):
    """The stylesheets and scripts a page refers to under /static/."""
    return re.findall(r'(?:href|src)="(/static/[^"]+)"', html)


def logged_in(url):
    client = httpx.Client(base_url=url, timeout=10)
    login = client.get("/admin/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
    done = client.post("/admin/login/?next=/admin/", data={
        "csrfmiddlewaretoken": token, "username": "ops", "password": PASSWORD,
        "next": "/admin/"})
    assert done.status_code == 302, done.text[:500]
    return client


def assert_served(client, path, content_type):
    response = client.get(path)
    assert response.status_code == 200, path
    assert response.headers["content-type"].startswith(content_type), path
    return response


def test_the_admin_login_page_refers_to_hashed_files_served_with_long_caching(production):
    server, _ = production
    with httpx.Client(base_url=server.url, timeout=10) as client:
        page = client.get("/admin/login/")
        assert page.status_code == 200
        refs = assets(page.text)
        css = [r for r in refs if r.endswith(".css")]
        # Hashed names (the manifest storage): a new release is a new URL.
        assert any(re.search(r"/admin/css/base\.[0-9a-f]{12}\.css$", r) for r in css), refs
        for ref in refs:
            kind = "text/css" if ref.endswith(".css") else "text/javascript"
            response = assert_served(client, ref, kind)
            assert "max-age=315360000" in response.headers["cache-control"], ref
            assert "immutable" in response.headers["cache-control"], ref
        compressed = client.get(css[0], headers={"accept-encoding": "gzip"})
        assert compressed.headers.get("content-encoding") == "gzip"


def test_the_live_status_page_is_styled_and_its_script_is_collected(production):
    server, _ = production
    client = logged_in(server.url)
    try:
        page = client.get(STATUS_PAGE)
        assert page.status_code == 200
        assert 'id="flexiai-status"' in page.text
        css = [r for r in assets(page.text) if r.endswith(".css")]
        assert any("/admin/css/base." in r for r in css), css  # the admin's look
        for ref in css:
            assert_served(client, ref, "text/css")
        # Its own script and style are inlined (no extra request); the file is collected
        # too, under its plain name with a short cache lifetime.
        script = assert_served(client, "/static/flexiai_django/status.js", "text/javascript")
        assert "max-age=60" in script.headers["cache-control"]
    finally:
        client.close()


def test_nginx_can_serve_the_collected_files_instead(production):
    if find_nginx() is None:
        if os.environ.get("CI"):
            pytest.fail(f"nginx is missing under CI ({INSTALL_HINT})")
        pytest.skip(f"nginx is not installed ({INSTALL_HINT})")
    server, static_root = production
    with NginxProxy([server.url], static_root=static_root) as proxy, \
            httpx.Client(base_url=proxy.url, timeout=10) as client:
        refs = assets(client.get("/admin/login/").text)
        css = next(r for r in refs if "/admin/css/base." in r)
        response = assert_served(client, css, "text/css")
        # nginx's own caching rule, not WhiteNoise's: the file never reached the app.
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.headers["server"].startswith("nginx")
        assert client.get("/static/no/such/file.css").status_code == 404


def test_gunicorn_sync_workers_serve_them_too(seeded, production):
    """The WSGI path of the same middleware (AsyncWhiteNoiseMiddleware in sync mode)."""
    _, static_root = production
    server = start("gunicorn-sync", seeded, workers=1, **DEMO_SETTINGS, DJANGO_DEBUG="0",
                   DJANGO_STATIC_ROOT=str(static_root))
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            css = [r for r in assets(client.get("/admin/login/").text) if r.endswith(".css")]
            assert css
            for ref in css:
                response = assert_served(client, ref, "text/css")
                assert "immutable" in response.headers["cache-control"], ref
    finally:
        server.stop()
