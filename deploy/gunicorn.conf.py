"""gunicorn settings for flexiai_site.

    gunicorn -c deploy/gunicorn.conf.py flexiai_site.asgi:application

Each worker process starts its own breaker listener lazily on first use; ``worker_exit``
only makes an exiting worker leave the broadcast group at once.

Prometheus: each worker writes its metrics to files in ``PROMETHEUS_MULTIPROC_DIR`` and
``GET /metrics`` adds them up. The variable must be set before a worker imports
prometheus_client, so it is set here, in the master, whose environment the workers
inherit: the operator's directory if given, else a private one for this master. Files
left by an earlier run are wiped when the master starts (their counts would be added to
this run's), and ``child_exit`` drops a dead worker's live gauges.
"""

import multiprocessing
import os
import shutil
import tempfile
from pathlib import Path

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

# Named after this master's pid: stable across `kill -HUP` (which re-reads this file),
# distinct for two masters on one host.
_PRIVATE_METRICS_DIR = os.path.join(tempfile.gettempdir(), f"flexiai-prometheus-{os.getpid()}")
METRICS_DIR = Path(os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", _PRIVATE_METRICS_DIR))


def on_starting(server):
    """Once per master, before any worker: an empty metrics directory."""
    METRICS_DIR.mkdir(parents=True, exist_ok=True)
    for stale in METRICS_DIR.glob("*.db"):
        stale.unlink()


def child_exit(server, worker):
    """A dead worker's live gauges must not linger; its counters still count."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, str(METRICS_DIR))


def worker_exit(server, worker):
    """In the exiting worker: leave the broadcast group now, not after group_expiry."""
    try:
        from flexiai_django import broadcast

        broadcast.leave()
    except Exception as exc:  # the app may never have loaded; exiting must not fail
        server.log.warning("flexiai: broadcast group not left (%s)", type(exc).__name__)


def on_exit(server):
    if str(METRICS_DIR) == _PRIVATE_METRICS_DIR:
        shutil.rmtree(METRICS_DIR, ignore_errors=True)
