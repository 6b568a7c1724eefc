"""flexiai.W003 at process start, for servers (which run no system checks)."""

import logging

import django
import pytest
from django.core.management import ManagementUtility
from django.test import override_settings

from flexiai_django.apps import _inside_management_command, warn_at_start

ANONYMOUS = {"ALLOW_ANONYMOUS_LOOPBACK": True}


def warnings_at_start(caplog):
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="flexiai_django"):
        warn_at_start()
    return [r for r in caplog.records if r.name == "flexiai_django"]


@override_settings(DEBUG=False, FLEXIAI=ANONYMOUS, SILENCED_SYSTEM_CHECKS=[])
def test_anonymous_loopback_with_debug_off_is_one_warning_line(caplog):
    (record,) = warnings_at_start(caplog)
    assert record.levelno == logging.WARNING
    line = record.getMessage()
    assert line.startswith("flexiai.W003: FLEXIAI['ALLOW_ANONYMOUS_LOOPBACK'] is on")
    assert "HINT: " in line and "\n" not in line


@pytest.mark.parametrize("overrides", [
    {"DEBUG": True, "FLEXIAI": ANONYMOUS, "SILENCED_SYSTEM_CHECKS": []},
    {"DEBUG": False, "FLEXIAI": {}, "SILENCED_SYSTEM_CHECKS": []},
    {"DEBUG": False, "FLEXIAI": ANONYMOUS, "SILENCED_SYSTEM_CHECKS": ["flexiai.W003"]},
])
def test_nothing_to_say_or_silenced_is_quiet(caplog, overrides):
    with override_settings(**overrides):
        assert warnings_at_start(caplog) == []


def test_management_commands_are_told_apart_from_everything_else(monkeypatch, capsys):
    """manage.py/django-admin reach django.setup() through ManagementUtility.execute."""
    assert _inside_management_command() is False  # pytest, like a server
    seen = []
    monkeypatch.setattr(django, "setup", lambda *a, **k: seen.append(_inside_management_command()))
    ManagementUtility(["manage.py", "version"]).execute()
    assert seen == [True]
    assert capsys.readouterr().out.strip() == django.get_version()
