"""Demo/reference settings.

Embedded default: with no REDIS_URL, SQLite + local-memory cache + in-memory channel
layer (one process, no services). With REDIS_URL, django-redis and channels-redis:
the same code path, a shared store.
"""

import importlib.util
import json
import os
from pathlib import Path

from redis.backoff import NoBackoff
from redis.retry import Retry

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("FLEXIAI_VAR_DIR", BASE_DIR / "var"))

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "insecure-demo-key-change-me-in-production")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "flexiai_django",
    "flexiai_site",
]

MIDDLEWARE = [
    "flexiai_django.middleware.FlexiAIMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# API-only instances can drop Django's sync middleware: under ASGI each MiddlewareMixin
# hook is a thread hop (measured in bench/gateway.py). Keys still work; staff sessions
# and the admin need the full stack.
if os.environ.get("FLEXIAI_LEAN_MIDDLEWARE") == "1":
    MIDDLEWARE = ["flexiai_django.middleware.FlexiAIMiddleware"]
    SILENCED_SYSTEM_CHECKS = ["admin.E408", "admin.E409", "admin.E410"]  # no admin here

ROOT_URLCONF = "flexiai_site.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
WSGI_APPLICATION = "flexiai_site.wsgi.application"
ASGI_APPLICATION = "flexiai_site.asgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("FLEXIAI_DB", str(VAR_DIR / "db.sqlite3")),
    }
}

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                # Fail fast: redis-py's default client retries 10 times with backoff,
                # which would hold a request for seconds while Redis is down.
                "SOCKET_CONNECT_TIMEOUT": 0.25,
                "SOCKET_TIMEOUT": 0.25,
                "CONNECTION_POOL_KWARGS": {"retry": Retry(NoBackoff(), 0)},
            },
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # socket_timeout above channels-redis's 5 s blocking read (redis-py 8 defaults
            # to 5 s, which turns every idle receive into a TimeoutError): check flexiai.W002.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 10,
                                  "socket_connect_timeout": 1}],
                       # A crashed worker leaves the group within 5 min (it re-joins
                       # every group_expiry / 4 while alive).
                       "group_expiry": 300},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

FLEXIAI = {
    "BREAKER_STORE": {
        "BACKEND": "flexiai_django.breakers.redis_store.RedisBreakerStore"
        if REDIS_URL
        else "flexiai_django.breakers.memory.LocalBreakerStore",
        "OPTIONS": {},
    },
    # The demo answers curl without a key on 127.0.0.1 only; issue keys in the admin otherwise.
    "ALLOW_ANONYMOUS_LOOPBACK": os.environ.get("FLEXIAI_ANONYMOUS_LOOPBACK", "1") == "1",
    "DEGRADED_MESSAGE": os.environ.get(
        "FLEXIAI_DEGRADED_MESSAGE",
        "Our assistant is busy right now. Please try again in a minute.",
    ),
}

# The production install (the `server` extra) has httpx-aiohttp: the same httpx clients,
# about half the CPU per upstream call (bench/README.md). Without it, httpx's transport.
if importlib.util.find_spec("httpx_aiohttp") is not None:
    FLEXIAI["ASYNC_TRANSPORT"] = "flexiai_django.providers.transports.aiohttp_transport"

# Deployment knobs without editing this file, e.g. FLEXIAI_JSON='{"FAILURE_THRESHOLD": 3}'.
FLEXIAI.update(json.loads(os.environ.get("FLEXIAI_JSON", "{}")))

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"message": {"format": "%(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler"},
                 "json": {"class": "logging.StreamHandler", "formatter": "message"}},
    "loggers": {
        "flexiai_django": {"handlers": ["console"], "level": "INFO"},
        "flexiai_django.requests": {"handlers": ["json"], "level": "INFO", "propagate": False},
    },
}
