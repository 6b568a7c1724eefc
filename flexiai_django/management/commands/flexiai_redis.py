"""Check every Redis the app is configured with (:mod:`flexiai_django.redis_check`).

Exit status 1 when any of them fails PING or refuses a write. URLs are shown redacted.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from flexiai_django.redis_check import check_all


class Command(BaseCommand):
    help = "PING each configured Redis and report version, memory, eviction policy, writes."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def handle(self, *args: Any, **options: Any) -> None:
        results = check_all()
        failed = [r for r in results if not r.ok]
        if options["json"]:
            self.stdout.write(json.dumps({"ok": not failed,
                                          "redis": [r.to_dict() for r in results]}, indent=2))
        elif not results:
            self.stdout.write("No Redis configured (in-process breakers, local cache).")
        for r in results if not options["json"] else ():
            if r.ok:
                self.stdout.write(
                    f"ok      {r.target}: ping {r.ping_ms} ms, redis {r.version or '?'}, "
                    f"used memory {r.used_memory or '?'}, maxmemory-policy "
                    f"{r.maxmemory_policy or '?'}, writes ok")
            else:
                self.stdout.write(f"FAILED  {r.target}: {r.error}")
        if failed:
            raise CommandError(f"{len(failed)} of {len(results)} Redis checks failed.")
