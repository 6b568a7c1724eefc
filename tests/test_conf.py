"""Settings are read lazily through one object that reloads when Django's settings change."""

import re
from pathlib import Path

import pytest
from django.test import override_settings

from flexiai_django.conf import DEFAULTS, get_settings


def test_defaults_fill_what_the_project_leaves_out():
    with override_settings(FLEXIAI={"FAILURE_THRESHOLD": 2}):
        s = get_settings()
        assert s.FAILURE_THRESHOLD == 2
        assert DEFAULTS["OPEN_SECONDS"] == s.OPEN_SECONDS


def test_a_settings_change_is_seen_at_once():
    before = get_settings().FAILURE_THRESHOLD
    with override_settings(FLEXIAI={"FAILURE_THRESHOLD": before + 7}):
        assert before + 7 == get_settings().FAILURE_THRESHOLD
    assert before == get_settings().FAILURE_THRESHOLD


def test_a_misspelt_attribute_fails_loudly():
    with pytest.raises(AttributeError, match="FAILURE_TRESHOLD"):
        get_settings().FAILURE_TRESHOLD  # noqa: B018


def test_every_setting_has_exactly_one_system_check():
    from flexiai_django.checks import RULES

    keys = [rule.key for rule in RULES]
    assert sorted(keys) == sorted(DEFAULTS) and len(set(keys)) == len(keys)


def test_unknown_keys_are_left_out_and_secrets_stay_out_of_repr():
    with override_settings(FLEXIAI={"ENCRYPTION_KEYS": ["k-very-secret-1"], "NOPE": 1}):
        s = get_settings()
        assert s.ENCRYPTION_KEYS == ["k-very-secret-1"]
        assert "k-very-secret-1" not in repr(s) and "NOPE" not in s.as_dict()


def test_every_setting_is_documented_in_the_readme_configuration_table():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Configuration (`FLEXIAI`)", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", section, re.M))
    assert set(DEFAULTS) - documented == set()
