"""gunicorn settings for flexiai_site.

    gunicorn -c deploy/gunicorn.conf.py flexiai_site.asgi:application

Each worker process starts its own breaker listener lazily on first use, so no
hooks are needed for shared breaker state.
"""

import multiprocessing
import os

# Production defaults, unless set: DEBUG off (the demo settings default to DEBUG on).
os.environ.setdefault("DJANGO_DEBUG", "0")

bind = os.environ.get("BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
worker_class = os.environ.get("WORKER_CLASS", "uvicorn_worker.UvicornWorker")
reuse_port = True  # the kernel spreads connections evenly across workers
graceful_timeout = 20
timeout = 120  # a long stream must not be mistaken for a hung worker
keepalive = 5
# The app logs one JSON line per request (logger flexiai_django.requests: request id,
# worker, status, provider, tier, latency); gunicorn's access log would be a second line
# per request. ACCESS_LOG=- turns it back on.
accesslog = os.environ.get("ACCESS_LOG") or None
