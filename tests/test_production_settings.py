"""The demo settings are safe by default; the production profile passes check --deploy.

The settings read the environment at import, so each case runs the module afresh
(``runpy``) under its own environment, or ``manage.py`` in a subprocess.
"""

import os
import re
import runpy
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

ROOT = Path(__file__).resolve().parents[1]
STRONG_KEY = secrets.token_urlsafe(50)
DEMO_KEY = "insecure-demo-key-change-me-in-production"
OUR_VARIABLES = ("DJANGO_DEBUG", "DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "DJANGO_HTTPS",
                 "DJANGO_CSRF_TRUSTED_ORIGINS", "DJANGO_HSTS_SECONDS", "DJANGO_HSTS_PRELOAD",
                 "FLEXIAI_ANONYMOUS_LOOPBACK", "FLEXIAI_LEAN_MIDDLEWARE")
PRODUCTION = {"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": STRONG_KEY,
              "DJANGO_ALLOWED_HOSTS": "flexiai.example.com", "DJANGO_HTTPS": "1"}


def load(monkeypatch, **env):
    """flexiai_site.settings as a fresh module, with only ``env`` of our variables set."""
    for name in OUR_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "flexiai_site" / "settings.py"), run_name="under_test")


def manage(*args, **env):
    """``manage.py`` with the demo settings (not the test suite's) and only ``env`` set."""
    clean = {k: v for k, v in os.environ.items() if k not in OUR_VARIABLES}
    clean.update(DJANGO_SETTINGS_MODULE="flexiai_site.settings", **env)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=clean,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize(("value", "debug"), [(None, False), ("0", False), ("", False),
                                               ("true", False), ("1", True)])
def test_debug_is_off_unless_django_debug_is_1(monkeypatch, value, debug):
    env = {"DJANGO_SECRET_KEY": STRONG_KEY} if value is None else {
        "DJANGO_SECRET_KEY": STRONG_KEY, "DJANGO_DEBUG": value}
    assert load(monkeypatch, **env)["DEBUG"] is debug


def test_anonymous_loopback_is_off_unless_set(monkeypatch):
    s = load(monkeypatch, DJANGO_SECRET_KEY=STRONG_KEY)
    assert s["FLEXIAI"]["ALLOW_ANONYMOUS_LOOPBACK"] is False
    s = load(monkeypatch, DJANGO_SECRET_KEY=STRONG_KEY, FLEXIAI_ANONYMOUS_LOOPBACK="1")
    assert s["FLEXIAI"]["ALLOW_ANONYMOUS_LOOPBACK"] is True


@pytest.mark.parametrize("key", [None, "", DEMO_KEY])
def test_debug_off_without_a_real_secret_key_refuses_to_load(monkeypatch, key):
    env = {} if key is None else {"DJANGO_SECRET_KEY": key}
    with pytest.raises(ImproperlyConfigured) as refused:
        load(monkeypatch, **env)
    assert "DJANGO_SECRET_KEY" in str(refused.value)
    assert "DJANGO_DEBUG=1" in str(refused.value)


def test_debug_on_may_use_the_demo_key(monkeypatch):
    assert load(monkeypatch, DJANGO_DEBUG="1")["SECRET_KEY"] == DEMO_KEY
    assert load(monkeypatch, DJANGO_DEBUG="1", DJANGO_SECRET_KEY=STRONG_KEY)[
        "SECRET_KEY"] == STRONG_KEY


def test_the_https_switch(monkeypatch):
    s = load(monkeypatch, **PRODUCTION)
    assert s["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")
    assert s["SECURE_SSL_REDIRECT"] and s["SESSION_COOKIE_SECURE"] and s["CSRF_COOKIE_SECURE"]
    assert s["SECURE_HSTS_SECONDS"] == 31536000 and s["SECURE_HSTS_INCLUDE_SUBDOMAINS"]
    assert s["SECURE_HSTS_PRELOAD"] is False
    assert s["CSRF_TRUSTED_ORIGINS"] == ["https://flexiai.example.com"]
    # SecurityMiddleware matches the exemptions against the path without its leading "/".
    exempt = [re.compile(p) for p in s["SECURE_REDIRECT_EXEMPT"]]
    for path in ("/health", "/health/live", "/health/ready", "/metrics"):
        assert any(p.search(path.lstrip("/")) for p in exempt), path
    for path in ("/", "/admin/login/", "/chat/direct", "/v1/chat/completions", "/metrics/x"):
        assert not any(p.search(path.lstrip("/")) for p in exempt), path


def test_https_knobs_come_from_the_environment(monkeypatch):
    s = load(monkeypatch, **{**PRODUCTION, "DJANGO_HSTS_SECONDS": "600",
                             "DJANGO_HSTS_PRELOAD": "1",
                             "DJANGO_CSRF_TRUSTED_ORIGINS":
                                 "https://a.example.com:8443, https://b.example.com"})
    assert (s["SECURE_HSTS_SECONDS"], s["SECURE_HSTS_PRELOAD"]) == (600, True)
    assert s["CSRF_TRUSTED_ORIGINS"] == ["https://a.example.com:8443", "https://b.example.com"]
    assert "security.W021" not in s["SILENCED_SYSTEM_CHECKS"]
    s = load(monkeypatch, **{**PRODUCTION, "DJANGO_ALLOWED_HOSTS": "a.example.com,.example.org"})
    assert s["CSRF_TRUSTED_ORIGINS"] == ["https://a.example.com", "https://*.example.org"]


def test_without_https_nothing_claims_tls(monkeypatch):
    s = load(monkeypatch, DJANGO_SECRET_KEY=STRONG_KEY)
    assert "SECURE_PROXY_SSL_HEADER" not in s and "SECURE_SSL_REDIRECT" not in s
    assert s["CSRF_TRUSTED_ORIGINS"] == []


def test_errors_reports_use_the_url_cleansing_filter(monkeypatch):
    assert load(monkeypatch, DJANGO_SECRET_KEY=STRONG_KEY)["DEFAULT_EXCEPTION_REPORTER_FILTER"] \
        == "flexiai_django.reporting.SafeExceptionReporterFilter"


@pytest.mark.slow
def test_the_production_profile_passes_check_deploy():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in result.stdout + result.stderr


@pytest.mark.slow
def test_check_deploy_without_a_secret_key_fails_and_says_what_to_set():
    result = manage("check", "--deploy", DJANGO_DEBUG="0")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "Set DJANGO_SECRET_KEY" in result.stderr and "DJANGO_DEBUG=1" in result.stderr


@pytest.mark.slow
def test_check_warns_about_anonymous_loopback_with_debug_off():
    result = manage("check", DJANGO_DEBUG="0", DJANGO_SECRET_KEY=STRONG_KEY,
                    FLEXIAI_ANONYMOUS_LOOPBACK="1")
    assert "flexiai.W003" in result.stderr, result.stdout + result.stderr
    assert result.stderr.count("flexiai.W003") == 1  # the check, not also the start-up log
    quiet = manage("check", DJANGO_DEBUG="0", DJANGO_SECRET_KEY=STRONG_KEY)
    assert "flexiai.W003" not in quiet.stdout + quiet.stderr


@pytest.mark.slow
def test_make_run_starts_the_demo_with_debug_and_anonymous_loopback(tmp_path):
    """Every command of `make run` gets both variables (its manage.py calls need DEBUG)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    seen = tmp_path / "seen"
    fake = venv / "bin" / "python"
    fake.write_text(f'#!/bin/sh\necho "$2 $DJANGO_DEBUG $FLEXIAI_ANONYMOUS_LOOPBACK" >> {seen}\n')
    fake.chmod(0o755)
    stamp = venv / ".installed"
    stamp.touch()
    os.utime(stamp, (4e9, 4e9))  # newer than pyproject.toml: make installs nothing
    env = {k: v for k, v in os.environ.items() if k not in OUR_VARIABLES}
    subprocess.run(["make", "-s", "run", f"VENV={venv}"], cwd=ROOT, env=env,
                   capture_output=True, timeout=60, check=False, start_new_session=True)
    lines = seen.read_text().splitlines()
    # The fake upstream runs in the background: the trap may stop it before it writes.
    assert {"migrate", "flexiai_seed_demo", "demo_admin", "runserver"} <= {
        line.split()[0] for line in lines}, lines
    assert all(line.endswith(" 1 1") for line in lines), lines
