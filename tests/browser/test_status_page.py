"""The admin's live breaker status page, seen by a real browser (issue 5).

The browser talks to the daphne process only; breakers are tripped in the uvicorn
workers of a second server. Whatever the page shows has come through Redis and the
channel layer, and it must change without a reload.
"""

import re

import pytest
from playwright.sync_api import expect

from flexiai_django.testing.browser import ReloadWatch
from flexiai_django.testing.servers import pids_of

pytestmark = [pytest.mark.browser, pytest.mark.slow]

STATUS = "/admin/flexiai_django/status/"
PROVIDER = "demo-primary"
LIVE_UPDATE_MS = 10_000


@pytest.fixture
def closed_breaker(live_site, fake_upstream):
    """The provider's upstream healthy and its breaker closed in Redis and in every worker."""
    live_site.force(PROVIDER, "closed")
    live_site.wait_until_every_worker_sees(PROVIDER, "closed")
    yield
    fake_upstream.clear_faults()
    live_site.force(PROVIDER, "closed")


@pytest.fixture
def status_page(operator_page, live_site, closed_breaker):
    """The status page, opened by an operator, with its socket live and confirmations accepted."""
    operator_page.on("dialog", lambda dialog: dialog.accept())
    operator_page.goto(f"{live_site.page.url}{STATUS}")
    expect(operator_page.locator("#flexiai-connection")).to_have_attribute(
        "data-status", "live", timeout=LIVE_UPDATE_MS)
    return operator_page


def row_of(page, provider=PROVIDER):
    return page.locator(f'tr[data-provider="{provider}"]')


def worker_pid(row):
    return pids_of([row.locator('[data-field="worker"]').inner_text().strip()])[0]


def test_a_breaker_tripped_in_another_worker_process_opens_on_the_page_without_a_reload(
        status_page, live_site, fake_upstream):
    row = row_of(status_page)
    expect(row).to_have_attribute("data-state", "closed")
    expect(row.locator('[data-field="state"]')).to_have_text("closed")
    watch = ReloadWatch(status_page)

    live_site.trip(PROVIDER)  # upstream answers 500 to the uvicorn workers' requests

    expect(row).to_have_attribute("data-state", "open", timeout=LIVE_UPDATE_MS)
    expect(row.locator('[data-field="state"]')).to_have_text("open")
    expect(row.locator('[data-field="failures"]')).to_have_text(re.compile(r"^\s*\d+\s*$"))
    expect(row.locator('[data-field="last-error"]')).not_to_be_empty()
    assert worker_pid(row) in live_site.api.worker_pids()
    timeline = status_page.locator("#flexiai-timeline li[data-transition]")
    expect(timeline.filter(has_text=PROVIDER).first).to_contain_text("closed → open")
    watch.assert_not_reloaded()


def test_reset_on_the_page_closes_the_breaker_for_every_worker(
        status_page, live_site, fake_upstream):
    row = row_of(status_page)
    live_site.trip(PROVIDER)
    expect(row).to_have_attribute("data-state", "open", timeout=LIVE_UPDATE_MS)
    fake_upstream.clear_faults()
    watch = ReloadWatch(status_page)

    row.locator('button[data-action="reset"]').click()

    expect(row).to_have_attribute("data-state", "closed", timeout=LIVE_UPDATE_MS)
    expect(row.locator('[data-field="state"]')).to_have_text("closed")
    assert worker_pid(row) == live_site.page.process.pid  # the reset came through the socket
    watch.assert_not_reloaded()
    assert live_site.breaker(PROVIDER, live_site.api)["state"] == "closed"
    live_site.wait_until_every_worker_sees(PROVIDER, "closed")


def test_force_open_on_the_page_makes_the_other_workers_route_around_the_provider(
        status_page, live_site, fake_upstream):
    row = row_of(status_page)

    row.locator('button[data-action="force_open"]').click()

    expect(row).to_have_attribute("data-state", "forced_open", timeout=LIVE_UPDATE_MS)
    assert live_site.breaker(PROVIDER, live_site.api)["state"] == "forced_open"
    live_site.wait_until_every_worker_sees(PROVIDER, "forced_open")
    hits = fake_upstream.hits(PROVIDER)
    assert {live_site.chat().json()["provider"] for _ in range(4)} == {"demo-secondary"}
    assert fake_upstream.hits(PROVIDER) == hits


def test_disable_on_the_page_is_shared_with_the_other_workers(status_page, live_site):
    row = row_of(status_page)

    row.locator('button[data-action="disable"]').click()

    expect(row).to_have_attribute("data-state", "disabled", timeout=LIVE_UPDATE_MS)
    expect(row.locator('[data-field="state"]')).to_have_text("disabled")
    assert live_site.breaker(PROVIDER, live_site.api)["state"] == "disabled"


def test_a_change_made_outside_the_page_reaches_it_live(status_page, live_site):
    row = row_of(status_page)
    watch = ReloadWatch(status_page)

    live_site.force(PROVIDER, "forced_open")  # an operator's shell, a third process

    expect(row).to_have_attribute("data-state", "forced_open", timeout=LIVE_UPDATE_MS)
    watch.assert_not_reloaded()


def test_anonymous_visitors_are_sent_to_the_admin_login(browser_page, live_site):
    browser_page.goto(f"{live_site.page.url}{STATUS}")

    expect(browser_page).to_have_url(
        re.compile(rf"/admin/login/\?next={re.escape(STATUS)}$"))
    expect(browser_page.locator("tr[data-provider]")).to_have_count(0)


def test_a_logged_in_user_who_is_not_staff_is_refused(browser_page, browser_context, live_site):
    browser_context.add_cookies([live_site.session_cookie("member")])

    browser_page.goto(f"{live_site.page.url}{STATUS}")

    expect(browser_page).to_have_url(re.compile(r"/admin/login/"))
    expect(browser_page.locator("#content")).to_contain_text("not authorized")
    expect(browser_page.locator("tr[data-provider]")).to_have_count(0)


def test_staff_without_provider_permissions_are_refused(staff_page, live_site):
    response = staff_page.goto(f"{live_site.page.url}{STATUS}")

    assert response.status == 403
    expect(staff_page.locator("tr[data-provider]")).to_have_count(0)
