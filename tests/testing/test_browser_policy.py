"""Where browser tests find chromium, and what happens when they can't (no browser needed)."""

import pytest

from flexiai_django.testing import pytest_plugin
from flexiai_django.testing.browser import CHROMIUM_ARGS, find_chromium


def test_an_explicit_chromium_path_wins_and_must_be_executable(monkeypatch, tmp_path):
    binary = tmp_path / "my-chromium"
    binary.write_text("#!/bin/sh\n")
    monkeypatch.setenv("FLEXIAI_CHROMIUM", str(binary))
    assert find_chromium() is None

    binary.chmod(0o755)
    assert find_chromium() == str(binary)


def test_without_chromium_the_reason_says_how_to_install_it(monkeypatch):
    monkeypatch.setenv("FLEXIAI_CHROMIUM", "/nonexistent/chromium")
    assert "apt-get install -y chromium" in pytest_plugin._browser_missing()


@pytest.mark.parametrize(("value", "in_ci"), [
    (None, False), ("", False), ("0", False), ("false", False),
    ("1", True), ("true", True), ("yes", True),
])
def test_ci_is_recognised_from_the_environment(monkeypatch, value, in_ci):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert pytest_plugin._in_ci() is in_ci


def test_chromium_stays_off_the_network_and_runs_as_root():
    for flag in ("--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic"):
        assert flag in CHROMIUM_ARGS
