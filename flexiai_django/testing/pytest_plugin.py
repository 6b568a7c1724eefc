"""pytest fixtures for projects that use flexiai_django.

Load with ``-p flexiai_django.testing.pytest_plugin`` (addopts) or ``pytest_plugins``.

* Redis: ``REDIS_URL`` (default ``redis://127.0.0.1:6379/15``) must answer; if it does not
  and ``redis-server`` is installed, a throwaway one is started for the session. No Redis
  at all is an error, never a silent skip.
* ``fake_upstream``: a real HTTP server on loopback speaking the OpenAI, Anthropic and
  Ollama APIs, with fault injection; reset before every test.
* ``make_provider``: Provider rows pointing at a fake-upstream scope.
* ``flexiai_reset``: fresh breakers, provider cache and answer cache.
* The deployment's background probers (active and warm-up) do not start by themselves in
  the test process: their calls would reach the fake upstream at moments no test chose.
  A test of probing starts its own ``Runner`` (or ``active_probes.start()``).
* ``api_token``: a ``chat``-scoped API key's token (needs the database).
* Browser (:mod:`flexiai_django.testing.browser`): ``chromium_executable``, ``chromium``
  (a headless Browser, one per test module), ``browser_context`` and ``browser_page``
  (fresh cookies per test). Under CI (``$CI`` set) a missing chromium or Playwright is an
  error; elsewhere those tests skip and say how to install it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from flexiai_django.testing.fake_upstream import FakeUpstream
from flexiai_django.testing.redis_server import RedisServer, ping

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/15"
_throwaway: RedisServer | None = None


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> Generator[None, None, None]:
    """Runs before pytest-django imports settings, which read REDIS_URL."""
    global _throwaway
    url = os.environ.setdefault("REDIS_URL", DEFAULT_TEST_REDIS_URL)
    if not ping(url):
        try:
            _throwaway = RedisServer().start()
        except RuntimeError as exc:
            raise pytest.UsageError(f"No Redis answers at REDIS_URL={url} and {exc}.") from None
        os.environ["REDIS_URL"] = _throwaway.url
    return (yield)


def pytest_report_header(config: pytest.Config) -> str:
    where = "throwaway redis-server" if _throwaway else "REDIS_URL"
    return f"flexiai redis: {os.environ.get('REDIS_URL')} ({where})"


def pytest_unconfigure(config: pytest.Config) -> None:
    if _throwaway is not None:
        _throwaway.close()


@pytest.fixture(scope="session", autouse=True)
def _flexiai_probers_held() -> Iterator[None]:
    from flexiai_django import active_probes, process_role, warmup

    with process_role.probers_held():
        active_probes.stop()  # started while settings were imported, if a store was built
        warmup.stop()
        yield


@pytest.fixture(scope="session")
def _fake_upstream_server() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


@pytest.fixture
def fake_upstream(_fake_upstream_server: FakeUpstream) -> FakeUpstream:
    _fake_upstream_server.reset()
    return _fake_upstream_server


@pytest.fixture
def flexiai_reset() -> Iterator[None]:
    """Fresh breaker state, provider snapshot, answer cache and stats around a test."""
    from django.core.cache import caches

    from flexiai_django import cache_tier, history, provider_cache, recent_calls, redis_reach
    from flexiai_django.breakers import get_store
    from flexiai_django.conf import get_settings
    from flexiai_django.session_store import SessionsUnavailable, get_sessions

    def clear() -> None:
        # Writes queued by the last test land before anything is cleared, not in the
        # next test's cache, nor in its database while it is being flushed.
        cache_tier.flush()
        history.flush()
        get_store().clear()
        with contextlib.suppress(SessionsUnavailable):  # a test broke Redis on purpose
            get_sessions().clear()
        provider_cache.invalidate()
        recent_calls.local().clear()
        cache_tier.forget_outage()  # a test that broke the cache leaves no back-off behind
        redis_reach.forget_servers()  # nor a server marked unreachable
        caches[get_settings().CACHE_ALIAS].clear()

    clear()
    yield
    clear()


@pytest.fixture
def make_provider(fake_upstream: FakeUpstream, flexiai_reset: None) -> Callable[..., Any]:
    """``make_provider("primary", kind="anthropic", priority=1, api_key="…")``.

    The provider's base URL is the fake upstream's scope of the same name, whose
    replies start with ``"<name>: "`` so a test can tell who answered. Its rows do not
    retry a failed call on the same provider unless asked (``max_retries=1``), so a
    fault costs the upstream hits a test counts on.
    """
    from flexiai_django import provider_cache
    from flexiai_django.models import Provider

    api_of = {"openai": "openai", "openai_compatible": "openai", "anthropic": "anthropic",
              "ollama": "ollama"}

    def make(name: str, *, kind: str = "openai", api_key: str | None = None,
             **fields: Any) -> Provider:
        fields.setdefault("model", f"{name}-model")
        fields.setdefault("timeout", 2.0)
        fields.setdefault("max_retries", 0)
        fields.setdefault("base_url", fake_upstream.base_url(name, api=api_of[kind]))
        provider = Provider(name=name, kind=kind, **fields)
        provider.set_api_key(api_key)
        provider.save()
        fake_upstream.set_reply_prefix(name, f"{name}: ")
        provider_cache.invalidate()
        return provider

    return make


@pytest.fixture
def api_token(db: None) -> str:
    """The token of a fresh ``chat``-scoped key with no rate limit."""
    from flexiai_django import auth
    from flexiai_django.testing.keys import issue_api_key

    auth.forget_keys()
    return issue_api_key()[1]


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def _browser_missing() -> str | None:
    """Why browser tests cannot run here, or None."""
    try:
        from flexiai_django.testing.browser import INSTALL_HINT, find_chromium
    except ImportError:
        return "Playwright is not installed (pip install -e '.[dev]')"
    if find_chromium() is None:
        return f"chromium is not installed ({INSTALL_HINT}, or set $FLEXIAI_CHROMIUM)"
    return None


@pytest.fixture(scope="session")
def nginx_executable() -> str:
    """Debian's nginx, for tests behind a real reverse proxy: fails under CI when missing."""
    from flexiai_django.testing.nginx import INSTALL_HINT, find_nginx

    path = find_nginx()
    if path is None:
        reason = f"nginx is not installed ({INSTALL_HINT})"
        if _in_ci():
            pytest.fail(f"nginx tests cannot run in CI: {reason}", pytrace=False)
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """The browser binary. The one place that decides: fail under CI, skip elsewhere."""
    reason = _browser_missing()
    if reason is not None:
        if _in_ci():
            pytest.fail(f"browser tests cannot run in CI: {reason}", pytrace=False)
        pytest.skip(reason)
    from flexiai_django.testing.browser import find_chromium

    path = find_chromium()
    assert path is not None
    return path


@pytest.fixture(scope="module")
def chromium(chromium_executable: str) -> Iterator[Browser]:
    """A headless browser shared by one test module.

    Not session-wide: while Playwright's sync API is active Django refuses ORM calls in
    this thread, so it is stopped before the next module's tests run.
    """
    from playwright.sync_api import sync_playwright

    from flexiai_django.testing.browser import launch_chromium

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright, chromium_executable)
        yield browser
        browser.close()


@pytest.fixture
def browser_context(chromium: Browser) -> Iterator[BrowserContext]:
    """A fresh profile (no cookies, no storage) per test, so logins never leak."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    yield context
    context.close()


@pytest.fixture
def browser_page(browser_context: BrowserContext) -> Page:
    return browser_context.new_page()
