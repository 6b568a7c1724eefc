"""Error reports hide passwords written inside URLs (REDIS_URL and friends)."""

import sys

import pytest
from django.test import RequestFactory, override_settings
from django.views.debug import ExceptionReporter, get_default_exception_reporter_filter

from flexiai_django.reporting import SafeExceptionReporterFilter, cleanse_url_credentials

PASSWORD = "s3cr3t-Redis-pw"
STARS = "********************"
URL = f"redis://flexiai:{PASSWORD}@redis.internal:6379/0"
SAFE_URL = f"redis://flexiai:{STARS}@redis.internal:6379/0"


@pytest.mark.parametrize(("text", "cleansed"), [
    (URL, SAFE_URL),
    (f"redis://:{PASSWORD}@h:6379/1", f"redis://:{STARS}@h:6379/1"),
    (f"rediss://u:{PASSWORD}@h", f"rediss://u:{STARS}@h"),
    (f"postgres://u:p@ss{PASSWORD}@db/x?sslmode=require", f"postgres://u:{STARS}@db/x?sslmode=require"),
    (f"a=redis://u:{PASSWORD}@h1/0,b=redis://v:{PASSWORD}@h2/0",
     f"a=redis://u:{STARS}@h1/0,b=redis://v:{STARS}@h2/0"),
    ("redis://user@host:6379/0", "redis://user@host:6379/0"),  # no password, nothing to hide
    ("redis://host:6379/0", "redis://host:6379/0"),
    ("http://example.com/a:b@c", "http://example.com/a:b@c"),  # "@" in the path
    ("not a url: x@y", "not a url: x@y"),
])
def test_cleanse_url_credentials(text, cleansed):
    assert cleanse_url_credentials(text) == cleansed


@override_settings(
    REDIS_URL=URL,
    CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                        "LOCATION": URL}},
    CHANNEL_LAYERS={"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                "CONFIG": {"hosts": [{"address": URL, "socket_timeout": 10},
                                                     URL, (URL, 1)]}}},
)
def test_safe_settings_hide_url_passwords_at_any_depth():
    safe = SafeExceptionReporterFilter().get_safe_settings()
    assert PASSWORD not in repr(safe)
    assert safe["REDIS_URL"] == SAFE_URL
    assert safe["CACHES"]["default"]["LOCATION"] == SAFE_URL
    hosts = safe["CHANNEL_LAYERS"]["default"]["CONFIG"]["hosts"]
    assert hosts == [{"address": SAFE_URL, "socket_timeout": 10}, SAFE_URL, (SAFE_URL, 1)]
    # Django's own cleansing by name still applies.
    assert safe["SECRET_KEY"] == STARS


def test_the_demo_settings_use_it():
    assert isinstance(get_default_exception_reporter_filter(), SafeExceptionReporterFilter)


def connect(url):
    options = {"location": url}  # noqa: F841 - a local the error page shows
    raise ConnectionError("Redis refused the connection")


@override_settings(DEBUG=True, REDIS_URL=URL)
def test_the_debug_error_page_and_error_mail_never_show_the_password():
    """Settings, request.META (runserver copies the environment into it) and locals."""
    request = RequestFactory().get("/boom", REDIS_URL=URL)
    try:
        connect(URL)
    except ConnectionError:
        reporter = ExceptionReporter(request, *sys.exc_info())
    html, text = reporter.get_traceback_html(), reporter.get_traceback_text()
    for page in (html, text):
        assert "Redis refused the connection" in page
        assert PASSWORD not in page
        assert STARS in page
    assert "redis.internal" in html  # where it connects to stays visible
