"""The planner as a service: read the signals, decide, say it; every ``INTERVAL_SECONDS``.

One process runs it (``manage.py flexiai_capacity``; a second one would only repeat the
same decisions). It starts from the decisions stored by an earlier run, so a restart
keeps the cool-downs in force. It only publishes on the broadcast group, never joins it
(:mod:`flexiai_django.process_role`): nobody sends it anything.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from django.db import close_old_connections

from flexiai_django.capacity import outputs, readings
from flexiai_django.capacity.config import PlannerConfig, planner_config
from flexiai_django.capacity.planner import Decision, Planner
from flexiai_django.conf import get_settings

logger = logging.getLogger("flexiai_django")

Emit = Callable[[Iterable[Decision], str | None], None]


def current_config() -> PlannerConfig:
    return planner_config(get_settings().CAPACITY_PLANNER)


class Service:
    def __init__(self, config: PlannerConfig | None = None,
                 sources: readings.Sources | None = None,
                 clock: Callable[[], float] = time.time,
                 emit: Emit = outputs.emit, restore: bool = True) -> None:
        self.config = config or current_config()
        self.sources = sources or readings.default_sources()
        self.planner = Planner(self.config, clock)
        if restore:
            self.planner.restore(outputs.last_decisions().values())
        self._emit = emit
        self._stop = threading.Event()
        self.passes = 0

    def once(self, *, record: bool = True) -> dict[str, Decision]:
        """One reading and its decisions; ``record``: log, store, publish, call the hook."""
        close_old_connections()  # the provider table is read on every pass
        decisions = self.planner.decide(readings.read(self.config, self.sources))
        if record:
            self._emit(decisions.values(), self.config.hook)
        self.passes += 1
        return decisions

    def run(self) -> None:
        """Until :meth:`stop`; a failing pass is logged and the next one comes on time."""
        logger.info("capacity planner started: every %s s", self.config.interval_seconds)
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.once()
            except Exception as exc:
                logger.warning("capacity planner pass failed (%s)", type(exc).__name__)
            self._stop.wait(max(0.0, self.config.interval_seconds -
                                (time.monotonic() - started)))
        logger.info("capacity planner stopped")

    def stop(self) -> None:
        self._stop.set()
