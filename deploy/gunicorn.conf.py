"""gunicorn settings for flexiai_site.

    gunicorn -c deploy/gunicorn.conf.py flexiai_site.asgi:application

Each worker process starts its own breaker listener and active prober lazily on first
use; ``worker_exit`` only makes an exiting worker leave the broadcast group at once and
stop its prober.

SIGTERM drains (flexiai_django.drain): ``/health/ready`` answers 503 at once while the
workers keep serving for ``FLEXIAI["DRAIN_SECONDS"]`` (load balancers and Kubernetes
endpoints notice), then the master stops as gunicorn always does: listeners closed,
in-flight requests and streams given ``graceful_timeout``, workers leave the broadcast
group. SIGINT and SIGQUIT still stop at once. Under systemd use ``KillMode=mixed`` (only
the master gets SIGTERM); with the default every worker gets it too and nothing drains.

Bind: ``127.0.0.1:8000`` unless ``BIND`` says otherwise. Serve it behind nginx on the
same host (nginx buffers slow clients; gunicorn's workers should not wait on them); the
container image sets ``BIND=0.0.0.0:8000`` because nginx runs in another container.

Prometheus: each worker writes its metrics to files in ``PROMETHEUS_MULTIPROC_DIR`` and
``GET /metrics`` adds them up. The variable must be set before a worker imports
prometheus_client, so it is set here, in the master, whose environment the workers
inherit: the operator's directory if given, else a private one for this master, made
with ``mkdtemp`` (mode 0700, an unpredictable name: another local user cannot plant or
read metric files there). Files left by an earlier run are wiped when the master starts
(their counts would be added to this run's), and ``child_exit`` drops a dead worker's
live gauges. A private directory is removed when the master exits; the operator's never.
"""

import multiprocessing
import os
import shutil
import tempfile
from pathlib import Path

# Imported here, in the master, before any worker is forked: the drain flag is memory
# the master shares with its workers (see flexiai_django/drain.py).
from flexiai_django import drain

bind = os.environ.get("BIND", "127.0.0.1:8000")
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

# `kill -HUP` re-reads this file in the same master: the environment keeps the directory
# stable, and _PRIVATE_DIR_VARIABLE remembers that this file made it (so only then is it
# removed at exit).
_PRIVATE_DIR_VARIABLE = "FLEXIAI_PRIVATE_PROMETHEUS_DIR"
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="flexiai-prometheus-")
    os.environ[_PRIVATE_DIR_VARIABLE] = os.environ["PROMETHEUS_MULTIPROC_DIR"]
METRICS_DIR = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
PRIVATE_METRICS_DIR = os.environ.get(_PRIVATE_DIR_VARIABLE) == str(METRICS_DIR)


def _alone(server):
    """No other master shares the directory (``kill -USR2`` starts a new one beside us)."""
    return server.reexec_pid == server.master_pid == 0


def on_starting(server):
    """Once per master, before any worker: an empty metrics directory."""
    METRICS_DIR.mkdir(parents=True, exist_ok=True)
    if _alone(server):  # not while an upgraded master's old workers still write there
        for stale in METRICS_DIR.glob("*.db"):
            stale.unlink()


def when_ready(server):
    """SIGTERM drains first (see the module docstring)."""
    drain.install(server)


def post_worker_init(worker):
    """Tell the master how long to drain: only workers load the Django settings."""
    from flexiai_django.conf import get_settings

    drain.publish_seconds(get_settings().DRAIN_SECONDS)


def child_exit(server, worker):
    """A dead worker's live gauges must not linger; its counters still count."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, str(METRICS_DIR))


def worker_exit(server, worker):
    """In the exiting worker: leave the broadcast group now, not after group_expiry, and
    stop the active prober (a probe in flight is not waited for beyond a second)."""
    try:
        from flexiai_django import active_probes, broadcast, warmup

        broadcast.leave()
        active_probes.stop()
        warmup.stop()
    except Exception as exc:  # the app may never have loaded; exiting must not fail
        server.log.warning("flexiai: broadcast group not left (%s)", type(exc).__name__)


def on_exit(server):
    """Remove the directory this file made, unless a re-executed master still uses it."""
    if PRIVATE_METRICS_DIR and _alone(server):
        shutil.rmtree(METRICS_DIR, ignore_errors=True)
