"""A bounded history of breaker transitions in the database, for reviewing an outage later.

The worker whose call changed a breaker writes the row (the ``breaker_transition``
signal fires only there), so each transition is stored once for the whole deployment.
Writes run on one background thread per process: a transition can happen inside an
async request or a store call, and neither should wait on the database. Each starts
:data:`WRITE_DELAY` after its transition, so that the transition's broadcast, sent at
the same moment by the same process, does not share the CPU and the GIL with it (the
write, a reconnect included, is 2-3 ms of CPU: a third of what it took the broadcast to
reach the other workers on 2 cores, bench/README.md). Rows beyond
``FLEXIAI["HISTORY_LIMIT"]`` are pruned, oldest first.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from typing import Any

from django.db import DatabaseError, connections
from django.dispatch import receiver

from flexiai_django import signals
from flexiai_django.breakers.state import BreakerState
from flexiai_django.conf import get_settings
from flexiai_django.process_local import PerProcess
from flexiai_django.worker import worker_id

logger = logging.getLogger("flexiai_django")

_pending: set[Future[None]] = set()
#: Seconds between a transition and the start of its row's write.
WRITE_DELAY = 0.05


def _new_writer() -> ThreadPoolExecutor:
    _pending.clear()  # a forked child inherits its parent's futures, never its thread
    return ThreadPoolExecutor(1, thread_name_prefix="flexiai-history")


_executor = PerProcess(_new_writer)


def _writer() -> ThreadPoolExecutor:
    return _executor.get()


def _when(timestamp: float | None) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC) if timestamp else datetime.now(UTC)


def row_for(name: str, before: BreakerState, after: BreakerState) -> dict[str, Any]:
    return {
        "breaker": name[:200],
        "from_state": before.state.value,
        "to_state": after.state.value,
        "at": _when(after.changed_at),
        "worker": worker_id()[:200],
        "failures": after.failures,
        "error": (after.last_error or "")[:200],
    }


def write(row: dict[str, Any], limit: int) -> None:
    """Insert one transition and prune beyond ``limit``; never raises (history is best effort)."""
    from flexiai_django.models import BreakerTransition

    try:
        BreakerTransition.objects.create(**row)
        cutoff = (BreakerTransition.objects.order_by("-id")
                  .values_list("id", flat=True)[limit:limit + 1])
        if cutoff:
            BreakerTransition.objects.filter(id__lte=cutoff[0]).delete()
    except DatabaseError as exc:
        logger.warning("breaker history not written (%s)", type(exc).__name__)
    finally:
        connections.close_all()  # this thread's connections only; transitions are rare


def _write_at(due: float, row: dict[str, Any], limit: int) -> None:
    time.sleep(max(0.0, due - time.monotonic()))  # a burst of transitions waits once
    write(row, limit)


@receiver(signals.breaker_transition, dispatch_uid="flexiai-history")
def _on_transition(sender: Any, name: str, before: BreakerState, after: BreakerState,
                   **kwargs: Any) -> None:
    limit = get_settings().HISTORY_LIMIT
    if not limit or before.state == after.state:
        return
    future = _writer().submit(_write_at, time.monotonic() + WRITE_DELAY,
                              row_for(name, before, after), limit)
    _pending.add(future)
    future.add_done_callback(_pending.discard)


def flush(timeout: float = 5.0) -> None:
    """Wait for queued writes (tests, management commands that exit right after)."""
    wait(list(_pending), timeout=timeout)
