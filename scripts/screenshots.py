"""Screenshots of the admin's live status page in each breaker state, for the README.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]

Starts everything itself: a throwaway redis-server (or --redis-url), the fake upstream,
the live demo site (daphne + uvicorn workers) and headless chromium. The breaker is
driven the way the tests drive it: tripped by failing requests in the uvicorn workers,
half-open while a slow probe is in flight, then forced open, disabled and reset from the
page's own buttons.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from playwright.sync_api import Page, expect

from flexiai_django.testing.browser import admin_login, chromium
from flexiai_django.testing.fake_upstream import FakeUpstream
from flexiai_django.testing.live_site import LiveSite
from flexiai_django.testing.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
STATUS = "/admin/flexiai_django/status/"
PROVIDER = "demo-primary"
OPEN_SECONDS = 2.0  # short, so the half-open state is reachable in a few seconds
PROVIDER_TIMEOUT = 5.0  # the demo providers' timeout: how long the slow probe stays open


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--redis-url", help="use this Redis instead of a throwaway one")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    os.chdir(ROOT)  # the servers import the demo site from here

    redis = None if args.redis_url else RedisServer().start()
    redis_url = args.redis_url or (redis.url if redis else "")
    try:
        with (tempfile.TemporaryDirectory(prefix="flexiai-shots-") as tmp,
              FakeUpstream() as upstream,
              LiveSite(Path(tmp), upstream, redis_url=redis_url,
                       flexiai={"OPEN_SECONDS": OPEN_SECONDS}) as site,
              chromium() as browser):
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.set_default_timeout(15_000)
            page.on("dialog", lambda dialog: dialog.accept())
            admin = site.users["admin"]
            admin_login(page, site.page.url, admin.username, admin.password, next_path=STATUS)
            page.goto(f"{site.page.url}{STATUS}")
            expect(page.locator("#flexiai-connection")).to_have_attribute(
                "data-status", "live", timeout=15_000)
            take_all(page, site, upstream, args.out)
    finally:
        if redis is not None:
            redis.close()
    return 0


def take_all(page: Page, site: LiveSite, upstream: FakeUpstream, out: Path) -> None:
    row = page.locator(f'tr[data-provider="{PROVIDER}"]')

    def shot(state: str) -> None:
        expect(row).to_have_attribute("data-state", state, timeout=15_000)
        path = out / f"status-{state.replace('_', '-')}.png"
        page.screenshot(path=path, full_page=True)
        print(f"  {state:12} {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")

    shot("closed")

    tripped = site.trip(PROVIDER)
    shot("open")

    # Half-open: after the open period the next request is a probe; keep it in flight.
    while time.time() < float(tripped["retry_at"]):
        time.sleep(0.05)
    upstream.set_fault(PROVIDER, delay=PROVIDER_TIMEOUT + 3, times=1)
    probe = threading.Thread(target=site.chat)
    probe.start()
    shot("half_open")
    probe.join()  # the probe times out: open again
    upstream.clear_faults()

    for action, state in (("force_open", "forced_open"), ("disable", "disabled")):
        row.locator(f'button[data-action="{action}"]').click()
        shot(state)
    row.locator('button[data-action="reset"]').click()
    expect(row).to_have_attribute("data-state", "closed", timeout=15_000)


if __name__ == "__main__":
    sys.exit(main())
