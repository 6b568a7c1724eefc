"""`check --deploy` (flexiai.E070): a Redis that refuses our password, not one that is down."""

import secrets

import pytest
from django.test import override_settings

from flexiai_django.checks import check_redis_credentials
from flexiai_django.redis_credentials import redacted
from flexiai_django.testing.redis_server import RedisServer, free_port

pytestmark = pytest.mark.slow


def cache_at(url):
    return {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": url}}


def test_a_refused_password_is_an_error_that_does_not_show_it():
    password = secrets.token_hex(8)
    with RedisServer(password=password) as server:
        wrong = server.url.replace(password, "wrong-" + password)
        with override_settings(CACHES=cache_at(wrong), CHANNEL_LAYERS={}):
            [error] = check_redis_credentials()
        with override_settings(CACHES=cache_at(server.url), CHANNEL_LAYERS={}):
            assert check_redis_credentials() == []
    assert error.id == "flexiai.E070"
    assert "cache 'default'" in error.msg and "refused our credentials" in error.msg
    assert password not in error.msg and ":***@127.0.0.1" in error.msg


def test_an_unreachable_redis_is_no_error(caplog):
    url = f"redis://127.0.0.1:{free_port()}/0"
    with override_settings(CACHES=cache_at(url), CHANNEL_LAYERS={}):
        assert check_redis_credentials() == []
    assert "unreachable at start" in caplog.text


def test_redacted_hides_only_the_password():
    assert redacted("rediss://u:p%40ss@h:6380/0?ssl_ca_certs=/ca.pem") == \
        "rediss://u:***@h:6380/0?ssl_ca_certs=/ca.pem"
    assert redacted("redis://h:6379/0") == "redis://h:6379/0"
