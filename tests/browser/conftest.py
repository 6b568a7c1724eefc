"""One live demo site (daphne for the browser, uvicorn workers for the API) for this package."""

import pytest

from flexiai_django.testing.browser import admin_login
from flexiai_django.testing.live_site import LiveSite


@pytest.fixture(autouse=True)
def _fresh_state():
    """Replaces tests/conftest.py's reset, which flushes the Redis database: that would also
    drop the live servers' channel-layer group memberships and cut them off from the
    broadcast. Tests here reset the breakers they use through the servers instead."""


@pytest.fixture(scope="package")
def live_site(tmp_path_factory, _fake_upstream_server):
    with LiveSite(tmp_path_factory.mktemp("live-site"), _fake_upstream_server) as site:
        yield site


def logged_in(page, live_site, who):
    user = live_site.users[who]
    admin_login(page, live_site.page.url, user.username, user.password)
    return page


@pytest.fixture
def operator_page(browser_page, live_site):
    """Logged in to the admin as staff who may view and change providers (not a superuser)."""
    return logged_in(browser_page, live_site, "operator")


@pytest.fixture
def staff_page(browser_page, live_site):
    """Logged in to the admin as staff without any permission."""
    return logged_in(browser_page, live_site, "staff")
