"""A real browser can log in to the admin of the live site and photograph it."""

import pytest
from playwright.sync_api import expect

from flexiai_django.testing.browser import admin_login

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_staff_logs_in_to_the_admin_index_and_it_can_be_photographed(
        staff_page, live_site, tmp_path):
    expect(staff_page).to_have_url(f"{live_site.page.url}/admin/")
    expect(staff_page.locator("#user-tools")).to_contain_text("staff")
    expect(staff_page.locator("#site-name")).to_be_visible()

    shot = tmp_path / "admin-index.png"
    staff_page.screenshot(path=shot, full_page=True)

    data = shot.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 5_000


def test_the_admin_is_styled_because_the_live_site_serves_static_files(staff_page):
    background = staff_page.evaluate(
        "() => getComputedStyle(document.querySelector('#header')).backgroundColor")
    assert background not in ("", "rgba(0, 0, 0, 0)")


def test_a_user_who_is_not_staff_cannot_log_in_to_the_admin(browser_page, live_site):
    member = live_site.users["member"]
    with pytest.raises(AssertionError, match="staff account"):
        admin_login(browser_page, live_site.page.url, member.username, member.password)
