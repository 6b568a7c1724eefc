"""Providers, their breakers as the shared store sees them, requests in flight (per provider
and tier, deployment-wide), the shared state's health and the capacity planner's last
decisions.

Sessions are not counted: the session store has no cheap count (it would be a SCAN).

The data is ``/health``'s (:func:`views.health.provider_report` and :func:`sync_status`),
read from this process: no server needs to be running. Never prints API keys.
"""

from __future__ import annotations

import json
import time
from typing import Any

from asgiref.sync import async_to_sync
from django.core.management.base import BaseCommand, CommandParser

from flexiai_django.capacity.outputs import last_decisions
from flexiai_django.capacity.planner import Decision
from flexiai_django.conf import get_settings
from flexiai_django.models import Provider
from flexiai_django.views.health import provider_report, sync_status
from flexiai_django.views.providers import with_in_flight

COLUMNS = ("name", "kind", "model", "priority", "enabled", "circuit_state",
           "failure_count", "retry_at", "cooldown_until", "tier", "capacity", "in_flight")


def _disabled() -> list[dict[str, Any]]:
    """Disabled providers: listed (the chain skips them), with no breaker columns."""
    return [{"name": p.name, "kind": p.kind, "model": p.model, "priority": p.priority,
             "enabled": False, "available": False, "circuit_state": None,
             "failure_count": None, "retry_at": None, "cooldown_until": None,
             "misconfigured": None, "tier": p.tier, "capacity": p.capacity, "in_flight": None}
            for p in Provider.objects.filter(enabled=False).order_by("priority", "name")]


def status() -> dict[str, Any]:
    """Everything the command shows, as ``--json`` prints it."""
    report = async_to_sync(provider_report)()  # reads the store: sync_status sees it
    counted = async_to_sync(with_in_flight)(report)
    providers = sorted([{**p, "enabled": True} for p in counted["providers"]] + _disabled(),
                       key=lambda p: (p["priority"], p["name"]))
    return {"providers": providers, "tiers": counted["tiers"],
            "active_probe_seconds": get_settings().ACTIVE_PROBE_SECONDS, **sync_status(),
            "capacity": {t: d.to_dict() for t, d in sorted(last_decisions().items())}}


def _cell(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def table(rows: list[dict[str, Any]]) -> list[str]:
    """Fixed-width lines: a header, then one per provider (misconfigured ones say why)."""
    cells = [[_cell(row[c]) for c in COLUMNS] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(COLUMNS, widths, strict=True))]
    for row, line in zip(rows, cells, strict=True):
        text = "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip()
        if row["misconfigured"]:
            text += f"  MISCONFIGURED: {row['misconfigured']}"
        lines.append(text)
    return lines


def capacity_line(decisions: dict[str, dict[str, Any]]) -> str:
    """The capacity planner's last decision per tier, with its age."""
    if not decisions:
        return "capacity planner: no decision yet (manage.py flexiai_capacity)"
    now = time.time()
    parts = [f"{Decision.from_dict(d).describe()}, {now - d['at']:.0f} s ago"
             for d in decisions.values()]
    return "capacity planner: " + "; ".join(parts)


class Command(BaseCommand):
    help = "Show providers, their shared breakers, active probing and Redis health."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def handle(self, *args: Any, **options: Any) -> None:
        report = status()
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2))
            return
        if report["providers"]:
            for line in table(report["providers"]):
                self.stdout.write(line)
        else:
            self.stdout.write("No providers.")
        for tier in report["tiers"]:
            capacity = f" / {tier['capacity']}" if tier["capacity"] else " (uncapped)"
            self.stdout.write(f"tier {tier['tier']}: {tier['in_flight']}{capacity} in flight"
                              + (" (warming)" if tier["warming"] else ""))
        probe = report["active_probe_seconds"]
        self.stdout.write("")
        self.stdout.write(f"breaker store: {report['store']}  "
                          f"redis connected: {'yes' if report['redis_connected'] else 'NO'}  "
                          f"answer cache ok: {'yes' if report['answer_cache_ok'] else 'NO'}")
        self.stdout.write("active probes: " + (f"every {probe} s while a breaker is open"
                                               if probe else "off"))
        self.stdout.write(capacity_line(report["capacity"]))
