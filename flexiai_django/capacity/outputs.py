"""What the planner says of each decision: a log line, the last decision per tier in
Redis (``flexiai_status``, ``/metrics`` and the status page read it from there), an event
on the broadcast group (the live status page), and the hook for changes.

The last decisions live in one Redis hash (tier → JSON) beside the breaker state, or in
this process's memory with an in-process breaker store (one process: the planner's own
``--once`` still works, nobody else sees them).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from typing import Any

from django.dispatch import receiver

from flexiai_django import broadcast, signals
from flexiai_django.capacity import hook
from flexiai_django.capacity.planner import Decision
from flexiai_django.conf import get_settings
from flexiai_django.process_local import PerProcess
from flexiai_django.redis_clients import fail_fast_client
from flexiai_django.redis_outage import REDIS_ERRORS

logger = logging.getLogger("flexiai_django")

#: The broadcast event a decision travels as (the status page's consumer forwards it).
CAPACITY_EVENT = "flexiai.capacity"


class MemoryDecisions:
    def __init__(self) -> None:
        self._held: dict[str, str] = {}
        self._lock = threading.Lock()

    def save(self, decisions: Iterable[Decision]) -> None:
        with self._lock:
            self._held.update({d.tier: json.dumps(d.to_dict()) for d in decisions})

    def load(self) -> dict[str, Decision]:
        with self._lock:
            return {t: Decision.from_dict(json.loads(v)) for t, v in self._held.items()}

    def clear(self) -> None:
        with self._lock:
            self._held.clear()


class RedisDecisions:
    """``<key_prefix>:capacity:decisions``; options as the breaker store's."""

    def __init__(self, alias: str | None = None, url: str | None = None,
                 key_prefix: str = "flexiai", socket_timeout: float = 0.25,
                 connect_timeout: float = 0.25) -> None:
        self.key = f"{key_prefix}:capacity:decisions"
        self._client = fail_fast_client(url, alias, socket_timeout, connect_timeout)

    def save(self, decisions: Iterable[Decision]) -> None:
        mapping: dict[Any, Any] = {d.tier: json.dumps(d.to_dict()) for d in decisions}
        if mapping:
            self._client.hset(self.key, mapping=mapping)

    def load(self) -> dict[str, Decision]:
        raw: dict[Any, Any] = self._client.hgetall(self.key)
        found = {}
        for tier, value in raw.items():
            try:
                found[tier.decode()] = Decision.from_dict(json.loads(value))
            except (ValueError, TypeError):
                continue  # written by another version: skipped
        return found

    def clear(self) -> None:
        self._client.delete(self.key)


_OPTIONS = ("alias", "url", "key_prefix", "socket_timeout", "connect_timeout")


def _build() -> MemoryDecisions | RedisDecisions:
    from flexiai_django.breakers import get_store

    if not get_store().describe()["shared"]:
        return MemoryDecisions()
    options = get_settings().BREAKER_STORE.get("OPTIONS", {})
    return RedisDecisions(**{name: options[name] for name in _OPTIONS if name in options})


_decisions: PerProcess[MemoryDecisions | RedisDecisions] = PerProcess(_build)


def decisions_store() -> MemoryDecisions | RedisDecisions:
    """This process's store of last decisions, rebuilt after a fork and a settings change."""
    return _decisions.get()


@receiver(signals.settings_reloaded, dispatch_uid="flexiai-capacity-decisions")
def _drop(**kwargs: Any) -> None:
    _decisions.reset()


def last_decisions() -> dict[str, Decision]:
    """The planner's last decision per tier; empty when there is none or Redis is down."""
    try:
        return decisions_store().load()
    except REDIS_ERRORS as exc:
        logger.debug("capacity decisions not read (%s)", type(exc).__name__)
        return {}


def event(decisions: Iterable[Decision]) -> dict[str, Any]:
    return {"type": CAPACITY_EVENT, "decisions": [d.to_dict() for d in decisions]}


def emit(decisions: Iterable[Decision], hook_target: str | None) -> None:
    """Say it everywhere; one output failing never stops the others."""
    decided = list(decisions)
    for decision in decided:
        logger.info("capacity %s", decision.describe())
    try:
        decisions_store().save(decided)
    except REDIS_ERRORS as exc:
        logger.warning("capacity decisions not stored (%s)", type(exc).__name__)
    try:
        broadcast.publish(event(decided))
    except Exception as exc:
        logger.warning("capacity decisions not published (%s)", type(exc).__name__)
    for decision in decided:
        if decision.action != "hold":
            hook.call(hook_target, decision)
