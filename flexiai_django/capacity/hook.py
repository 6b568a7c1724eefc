"""The operator's hook: told of every scale decision that changes a tier.

``HOOK`` is a webhook URL, POSTed the decision as JSON with a short timeout, or a dotted
path to a callable given the :class:`~.planner.Decision` (for example one that runs
``kubectl scale``). Either way a failure is logged, never raised: the planner goes on
deciding, and the next change is sent again.
"""

from __future__ import annotations

import logging

import httpx
from django.utils.module_loading import import_string

from flexiai_django.capacity.planner import Decision

logger = logging.getLogger("flexiai_django")

#: Seconds a webhook may take (connect and answer): the planner's loop waits for it.
WEBHOOK_TIMEOUT = 3.0


def is_url(hook: str) -> bool:
    return hook.startswith(("http://", "https://"))


def call(hook: str | None, decision: Decision) -> bool:
    """Tell ``hook`` of ``decision``; whether it took it (a 2xx, or no exception)."""
    if not hook:
        return False
    try:
        if is_url(hook):
            response = httpx.post(hook, json=decision.to_dict(), timeout=WEBHOOK_TIMEOUT)
            response.raise_for_status()
        else:
            import_string(hook)(decision)
    except Exception as exc:
        where = "webhook" if is_url(hook) else hook  # a URL may carry a token: not logged
        logger.warning("capacity hook %s failed for %s (%s)", where, decision.tier,
                       type(exc).__name__)
        return False
    return True
