"""The HTTP control API: ``/_fault``, ``/_reset``, ``/_stats`` and ``/_health``.

What a demo, a benchmark or another process uses to steer a running fake upstream, the
way tests use ``FakeUpstream``'s methods. Each endpoint is a function of the shared state
and the request body that returns ``(status, document)``; the handler sends it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flexiai_django.testing.fake_upstream.faults import Fault, shown
from flexiai_django.testing.fake_upstream.state import State, norm_scope

Answer = tuple[int, dict[str, Any]]


def error(message: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    """The body of a refusal by the server itself (not by an emulated API)."""
    return {"error": {"message": message, "type": kind}}


def _fault(state: State, body: bytes) -> Answer:
    """Set or clear a scope's fault and/or reply prefix: ``{"scope": ..., <Fault fields>}``."""
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return 400, error("body must be JSON")
    if not isinstance(data, dict):
        return 400, error("body must be a JSON object")
    scope = data.pop("scope", "")
    clear = data.pop("clear", False)
    prefix = data.pop("reply_prefix", None)
    if not isinstance(scope, str) or not isinstance(prefix, str | None):
        return 400, error("'scope' and 'reply_prefix' must be strings")
    scope = norm_scope(scope)
    try:
        fault = None if clear or not data else Fault.from_dict(data)
    except (TypeError, ValueError) as exc:
        return 400, error(str(exc))
    if prefix is not None:
        state.set_reply_prefix(scope, prefix)
    if clear or data or prefix is None:
        state.set_fault(scope, fault)
    return 200, {"ok": True, "scope": scope, "fault": shown(fault)}


def _reset(state: State, body: bytes) -> Answer:
    state.reset()
    return 200, {"ok": True}


def _stats(state: State, body: bytes) -> Answer:
    return 200, state.stats()


def _health(state: State, body: bytes) -> Answer:
    return 200, {"ok": True}


# path -> (the one method allowed, endpoint)
CONTROLS: dict[str, tuple[str, Callable[[State, bytes], Answer]]] = {
    "/_fault": ("POST", _fault),
    "/_reset": ("POST", _reset),
    "/_stats": ("GET", _stats),
    "/_health": ("GET", _health),
}
