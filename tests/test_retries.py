"""The retry policy as pure rules: which failures are tried again, after how long."""

import email.utils

import pytest

from flexiai_django import retries
from flexiai_django.conf import FlexiAISettings
from flexiai_django.errors import (
    BadRequest,
    ContextLengthExceeded,
    MalformedReply,
    ProviderAuthError,
    RateLimited,
    StreamInterrupted,
    UpstreamConnectionError,
    UpstreamServerError,
    UpstreamTimeout,
)
from flexiai_django.providers.base import ProviderConfig

SETTINGS = FlexiAISettings(RETRY_BACKOFF_SECONDS=0.5, RETRY_AFTER_CAP_SECONDS=2.0)
PROVIDER = ProviderConfig("p", "openai", "http://x", "m", timeout=10.0, max_retries=2)


def delay(exc, retries_done=0, rand=0.5, spent=0.0, provider=PROVIDER):
    return retries.delay(exc, retries_done, provider, SETTINGS, rand, spent)


@pytest.mark.parametrize("exc", [
    RateLimited("x", status=429),
    *(UpstreamServerError("x", status=s) for s in (500, 502, 503, 504)),
    UpstreamConnectionError("reset before any byte"),
])
def test_transient_failures_are_retried_after_a_jittered_backoff(exc):
    assert retries.transient(exc)
    assert delay(exc, rand=0.5) == pytest.approx(0.25)


@pytest.mark.parametrize("exc", [
    UpstreamTimeout("slow"),
    UpstreamConnectionError("cut mid-reply", replied=True),
    UpstreamServerError("x", status=501),
    MalformedReply("x"),
    StreamInterrupted("x"),
    ProviderAuthError("x", status=401),
    BadRequest("x", status=400),
    ContextLengthExceeded("x", status=400),
])
def test_other_failures_fail_over_at_once(exc):
    assert not retries.transient(exc)
    assert delay(exc) is None


def test_the_backoff_is_full_jitter_and_doubles_with_each_retry():
    exc = UpstreamServerError("x", status=503)
    assert delay(exc, 0, rand=0.0) == 0.0
    assert delay(exc, 0, rand=0.999) == pytest.approx(0.4995)
    assert delay(exc, 1, rand=0.999) == pytest.approx(0.999)


def test_retries_stop_at_the_providers_max_retries():
    exc = RateLimited("x", status=429)
    assert delay(exc, 1) is not None
    assert delay(exc, 2) is None
    none = ProviderConfig("p", "openai", "http://x", "m", max_retries=0)
    assert delay(exc, 0, provider=none) is None


def test_a_short_retry_after_is_waited_for_exactly():
    assert delay(RateLimited("x", status=429, retry_after=1.5), rand=0.9) == 1.5
    assert delay(UpstreamServerError("x", status=503, retry_after=2.0)) == 2.0


def test_a_retry_after_beyond_the_cap_fails_over_at_once():
    assert delay(RateLimited("x", status=429, retry_after=2.01)) is None


def test_the_waits_stay_within_the_providers_timeout():
    exc = RateLimited("x", status=429, retry_after=2.0)
    assert delay(exc, spent=7.9) == 2.0
    assert delay(exc, spent=8.0) is None
    assert delay(UpstreamServerError("x", status=500), rand=0.5, spent=9.8) is None


def test_retry_after_in_seconds_or_as_an_http_date():
    now = 1_445_412_450.0  # Wed, 21 Oct 2015 07:27:30 GMT
    assert retries.retry_after_seconds("5", now) == 5.0
    assert retries.retry_after_seconds(" 1.5 ", now) == 1.5
    assert retries.retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now) == 30.0
    assert retries.retry_after_seconds(email.utils.formatdate(now + 12, usegmt=True),
                                       now) == 12.0
    assert retries.retry_after_seconds("Wed, 21 Oct 2015 07:00:00 GMT", now) == 0.0
    assert retries.retry_after_seconds("-3", now) == 0.0


@pytest.mark.parametrize("value", ["soon", "", "inf", "nan", "Wed, 99 Foo 2015"])
def test_a_retry_after_that_is_neither_is_ignored(value):
    assert retries.retry_after_seconds(value, 0.0) is None
