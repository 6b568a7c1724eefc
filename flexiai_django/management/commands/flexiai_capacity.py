"""``manage.py flexiai_capacity``: the capacity planner, as a long-lived service.

Every ``CAPACITY_PLANNER["INTERVAL_SECONDS"]`` it decides scale up / hold / scale down
per tier and says so (log, Redis for ``flexiai_status`` and ``/metrics``, the status
page, the hook). SIGTERM or Ctrl-C ends it after the pass in progress. ``--once`` makes
one pass, prints it and exits; ``--dry-run`` decides without recording or calling the
hook.
"""

from __future__ import annotations

import json
import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from flexiai_django.capacity.service import Service


class Command(BaseCommand):
    help = "Run the capacity planner (scale decisions per tier); --once for one decision."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true",
                            help="Decide once, print the decisions and exit.")
        parser.add_argument("--json", action="store_true",
                            help="With --once: print one JSON object.")
        parser.add_argument("--dry-run", action="store_true",
                            help="With --once: do not record the decisions or call the hook.")

    def handle(self, *args: Any, **options: Any) -> None:
        service = Service()
        if not options["once"]:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: service.stop())
            service.run()
            return
        decisions = service.once(record=not options["dry_run"])
        if options["json"]:
            self.stdout.write(json.dumps(
                {"decisions": [d.to_dict() for d in decisions.values()]}, indent=2))
        elif not decisions:
            self.stdout.write("No tiers to plan: no provider has a tier and "
                              "CAPACITY_PLANNER names no TIERS.")
        for decision in decisions.values() if not options["json"] else ():
            self.stdout.write(decision.describe())
