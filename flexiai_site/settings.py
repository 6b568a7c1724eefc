"""Demo/reference settings.

Embedded default: with no REDIS_URL, SQLite + local-memory cache + in-memory channel
layer (one process, no services). With REDIS_URL, django-redis and channels-redis:
the same code path, a shared store.

Safe by default: DEBUG is off unless ``DJANGO_DEBUG=1`` (``make run`` sets it), and with
DEBUG off the settings refuse to load without a real ``DJANGO_SECRET_KEY``. The production
profile (``DJANGO_DEBUG=0``, a strong ``DJANGO_SECRET_KEY``, ``DJANGO_ALLOWED_HOSTS`` and,
behind TLS, ``DJANGO_HTTPS=1``) passes ``manage.py check --deploy`` without warnings.
"""

import importlib.util
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from django.core.exceptions import ImproperlyConfigured
from redis.backoff import NoBackoff
from redis.retry import Retry

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("FLEXIAI_VAR_DIR", BASE_DIR / "var"))


def _env_list(name: str, default: str = "") -> list[str]:
    """A comma-separated variable as a list, blanks dropped."""
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def _https_origin(host: str) -> str | None:
    """The origin a browser sends for an ALLOWED_HOSTS entry ('.x.org' -> any subdomain)."""
    if host in ("*", "testserver"):
        return None
    return f"https://*{host}" if host.startswith(".") else f"https://{host}"


SILENCED_SYSTEM_CHECKS: list[str] = []

# Known to everyone who read this file: fine on a laptop, never with DEBUG off.
DEMO_SECRET_KEY = "insecure-demo-key-change-me-in-production"  # noqa: S105

DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if SECRET_KEY in ("", DEMO_SECRET_KEY):
    if not DEBUG:
        # A missing key must not silently become a public one: sessions, CSRF tokens,
        # password resets and the provider-key encryption all derive from it.
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set (or is the public demo key) and DEBUG is off. "
            "Set DJANGO_SECRET_KEY to a long random secret, e.g. the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`, "
            "or set DJANGO_DEBUG=1 for local development.")
    SECRET_KEY = DEMO_SECRET_KEY
ALLOWED_HOSTS = _env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")

# DJANGO_HTTPS=1 once TLS terminates in front of the app (nginx, an ingress, a load
# balancer) and that proxy sets X-Forwarded-Proto (overwriting what clients send).
HTTPS = os.environ.get("DJANGO_HTTPS", "0") == "1"
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    # Load balancer and kubelet probes, and Prometheus scrapes, talk plain HTTP to the pod:
    # a redirect would fail them. (Matched against the path without its leading slash.)
    SECURE_REDIRECT_EXEMPT = [r"^health", r"^metrics$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    # Preloading is a decision about the whole registrable domain, hard to take back
    # (https://hstspreload.org/#removal): the operator opts in, we never claim it.
    SECURE_HSTS_PRELOAD = os.environ.get("DJANGO_HSTS_PRELOAD", "0") == "1"
    if not SECURE_HSTS_PRELOAD:
        SILENCED_SYSTEM_CHECKS.append("security.W021")  # "not preloaded": deliberate, above
# Origins allowed to POST with a session (admin, demo page). Behind TLS the allowed hosts
# over https; set DJANGO_CSRF_TRUSTED_ORIGINS when the public origin differs (a port).
CSRF_TRUSTED_ORIGINS = _env_list("DJANGO_CSRF_TRUSTED_ORIGINS") or [
    origin for origin in map(_https_origin, ALLOWED_HOSTS) if origin and HTTPS]

# The technical error pages (DEBUG on) and error e-mails hide passwords inside URLs too,
# e.g. REDIS_URL's.
DEFAULT_EXCEPTION_REPORTER_FILTER = "flexiai_django.reporting.SafeExceptionReporterFilter"

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
    # Serves collectstatic's output from the app itself (gunicorn/uvicorn/daphne serve no
    # static files): compressed, with far-future cache headers for hashed names.
    "flexiai_django.static_files.AsyncWhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# An instance with no admin and no sessions at all. Not needed for speed any more: asgi.py
# serves the API paths through a lean handler (FLEXIAI["LEAN_PATHS"]) in every instance.
if os.environ.get("FLEXIAI_LEAN_MIDDLEWARE") == "1":
    MIDDLEWARE = ["flexiai_django.middleware.FlexiAIMiddleware"]
    SILENCED_SYSTEM_CHECKS += ["admin.E408", "admin.E409", "admin.E410"]  # no admin here

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
# Redis through Sentinel: REDIS_SENTINELS="host:port,host:port,…" and REDIS_URL's host
# names the master (redis://:password@mymaster/0, django-redis's convention). Every
# client (cache, channel layer, breaker store, rate limiter) then asks the sentinels
# where the master is, and asks again after a failover.
REDIS_SENTINELS = [(host, int(port)) for host, _, port in
                   (item.rpartition(":") for item in _env_list("REDIS_SENTINELS"))]
# Short timeouts towards the sentinels too: a dead sentinel must not hold a request.
_SENTINEL_KWARGS = {"socket_timeout": 0.25, "socket_connect_timeout": 0.25,
                    "password": os.environ.get("REDIS_SENTINEL_PASSWORD") or None}


def _channel_host(url: str) -> dict[str, object]:
    """channels-redis's host entry: the URL, or the sentinels and the master's name."""
    # socket_timeout above channels-redis's 5 s blocking read (redis-py 8 defaults to
    # 5 s, which turns every idle receive into a TimeoutError): check flexiai.W002.
    timeouts = {"socket_timeout": 10, "socket_connect_timeout": 1}
    if not REDIS_SENTINELS:
        return {"address": url, **timeouts}
    parsed = urlparse(url)
    return {"master_name": parsed.hostname, "sentinels": REDIS_SENTINELS,
            "sentinel_kwargs": _SENTINEL_KWARGS, "db": int(parsed.path.strip("/") or 0),
            "username": parsed.username, "password": parsed.password, **timeouts}


if REDIS_URL:
    _CACHE_OPTIONS: dict[str, object] = {
        # Fail fast: redis-py's default client retries 10 times with backoff,
        # which would hold a request for seconds while Redis is down.
        "SOCKET_CONNECT_TIMEOUT": 0.25,
        "SOCKET_TIMEOUT": 0.25,
        "CONNECTION_POOL_KWARGS": {"retry": Retry(NoBackoff(), 0)},
    }
    if REDIS_SENTINELS:
        _CACHE_OPTIONS.update({
            "CLIENT_CLASS": "django_redis.client.SentinelClient",
            "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
            "SENTINELS": REDIS_SENTINELS,
            "SENTINEL_KWARGS": _SENTINEL_KWARGS,
        })
    CACHES = {"default": {"BACKEND": "django_redis.cache.RedisCache",
                          "LOCATION": REDIS_URL, "OPTIONS": _CACHE_OPTIONS}}
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [_channel_host(REDIS_URL)],
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
    # Off unless set: `make run` sets FLEXIAI_ANONYMOUS_LOOPBACK=1 so the demo answers curl
    # without a key on 127.0.0.1. Behind a proxy every client is loopback (flexiai.W003).
    "ALLOW_ANONYMOUS_LOOPBACK": os.environ.get("FLEXIAI_ANONYMOUS_LOOPBACK", "0") == "1",
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
# `manage.py collectstatic` writes here (at image build time, or once per release); WhiteNoise
# serves it, or nginx does (deploy/nginx.conf, `location /static/`).
STATIC_ROOT = os.environ.get("DJANGO_STATIC_ROOT", str(BASE_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # With DEBUG off: hashed names (cached for ever by browsers and proxies) and gzip/brotli
    # copies. A page referring to a file collectstatic never saw is an error, not a 404.
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
                    if DEBUG else "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING: dict[str, Any] = {
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

# Log files besides the console (README: Logging to files): DJANGO_LOG_FILE=/var/log/
# flexiai/app.log rotates at DJANGO_LOG_MAX_BYTES (10 MB) and deletes rotated files older
# than DJANGO_LOG_MAX_AGE_DAYS (7). Everything that reaches the root logger goes there
# (flexiai_django at INFO, Django's and libraries' warnings), and the request log.
LOG_FILE = os.environ.get("DJANGO_LOG_FILE", "")
if LOG_FILE:
    LOGGING = {
        **LOGGING,
        "formatters": {**LOGGING["formatters"], "file": {
            "format": "%(asctime)s %(levelname)s %(process)d %(name)s %(message)s"}},
        "handlers": {**LOGGING["handlers"], "file": {
            "()": "flexiai_django.log_files.SizeAndAgeRotatingFileHandler",
            "filename": LOG_FILE, "formatter": "file",
            "max_bytes": int(os.environ.get("DJANGO_LOG_MAX_BYTES", str(10 * 1024 * 1024))),
            "max_age_days": float(os.environ.get("DJANGO_LOG_MAX_AGE_DAYS", "7")),
        }},
        "root": {"handlers": ["file"], "level": "WARNING"},
        "loggers": {**LOGGING["loggers"], "flexiai_django.requests": {
            "handlers": ["json", "file"], "level": "INFO", "propagate": False}},
    }
