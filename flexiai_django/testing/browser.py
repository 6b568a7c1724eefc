"""Headless Chromium for browser tests: Playwright's sync API driving Debian's ``chromium``.

Playwright's own browser download needs the internet, so we point Playwright at the
system browser (``apt-get install -y chromium``) with ``executable_path``. The pytest
fixtures built on this live in :mod:`flexiai_django.testing.pytest_plugin`.

While a sync Playwright session is open, its event loop counts as *running* in the
calling thread, so Django refuses ORM calls there (``SynchronousOnlyOperation``). Keep
database work in the server processes (see :mod:`flexiai_django.testing.live_site`) or
do it before the browser starts; do not paper over it with ``DJANGO_ALLOW_ASYNC_UNSAFE``.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import Browser, Frame, Page, Playwright, sync_playwright

__all__ = [
    "CHROMIUM_ARGS",
    "INSTALL_HINT",
    "ReloadWatch",
    "admin_login",
    "chromium",
    "find_chromium",
    "launch_chromium",
]

INSTALL_HINT = "apt-get install -y chromium"
CHROMIUM_ARGS = (
    "--no-sandbox",  # needed as root (containers, CI); the page is our own test site
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these chromium keeps calling Google services, which on a closed network
    # floods the logs with refused connections and slows the start.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def find_chromium() -> str | None:
    """``$FLEXIAI_CHROMIUM`` if set, else ``chromium`` (Debian) or ``chromium-browser`` on PATH."""
    configured = os.environ.get("FLEXIAI_CHROMIUM")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def launch_chromium(playwright: Playwright, executable_path: str | None = None,
                    headless: bool = True, **kwargs: Any) -> Browser:
    """Launch the system chromium with :data:`CHROMIUM_ARGS` (plus ``kwargs["args"]``)."""
    path = executable_path or find_chromium()
    if path is None:
        raise RuntimeError(f"chromium is not installed ({INSTALL_HINT})")
    args = [*CHROMIUM_ARGS, *kwargs.pop("args", ())]
    return playwright.chromium.launch(executable_path=path, headless=headless, args=args,
                                      **kwargs)


@contextmanager
def chromium(executable_path: str | None = None, headless: bool = True) -> Iterator[Browser]:
    """A Playwright session and a launched browser, both stopped on exit (scripts)."""
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright, executable_path, headless=headless)
        try:
            yield browser
        finally:
            browser.close()


def admin_login(page: Page, base_url: str, username: str, password: str,
                next_path: str = "/admin/") -> None:
    """Log in through the admin's own login form, as a person would, and land on ``next_path``.

    Raises ``AssertionError`` with the form's message when the admin refuses the login
    (wrong password, or a user who is not staff).
    """
    page.goto(f"{base_url}/admin/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    with page.expect_navigation():  # the POST answers with a redirect or the form again
        page.click("#login-form [type=submit]")
    if urlsplit(page.url).path == "/admin/login/":
        errors = page.locator(".errornote, .errorlist")
        reason = errors.first.inner_text() if errors.count() else page.url
        raise AssertionError(f"admin login as {username!r} refused: {reason}")


class ReloadWatch:
    """Proves a page updated in place: no main-frame navigation and the same JS realm.

    ``watch = ReloadWatch(page)`` once the page has loaded; ``watch.assert_not_reloaded()``
    after the change. A reload would both navigate and drop the marker set on ``window``.
    """

    def __init__(self, page: Page) -> None:
        self.page = page
        self.token = uuid.uuid4().hex
        self.navigations: list[str] = []
        page.evaluate("token => { window.__flexiaiReloadWatch = token; }", self.token)
        page.on("framenavigated", self._navigated)

    def _navigated(self, frame: Frame) -> None:
        if frame == self.page.main_frame:
            self.navigations.append(frame.url)

    def assert_not_reloaded(self) -> None:
        assert self.navigations == [], f"the page navigated: {self.navigations}"
        marker = self.page.evaluate("() => window.__flexiaiReloadWatch")
        assert marker == self.token, "the page was reloaded (its window marker is gone)"
