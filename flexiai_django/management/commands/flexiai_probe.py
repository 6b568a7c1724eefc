"""One real minimal call to a provider, timed: the active prober's call
(:func:`active_probes.call_provider`, ``ping`` with ``max_tokens`` 1) from a shell.

The outcome is printed, never recorded: the breaker is left as it is (use
``flexiai_reset`` to close it). Exit status 0 when the provider answered, 1 otherwise.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from flexiai_django.active_probes import PROBE_TIMEOUT_CAP, call_provider
from flexiai_django.provider_cache import get_snapshot


class Command(BaseCommand):
    help = ("Send one minimal real call to a provider and print its outcome and latency "
            "(the breaker is not touched).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("provider")
        parser.add_argument("--timeout", type=float, default=None,
                            help=f"Seconds (default: the provider's, at most "
                                 f"{PROBE_TIMEOUT_CAP:g}).")

    def handle(self, *args: Any, provider: str, timeout: float | None,
               **options: Any) -> None:
        snapshot = get_snapshot()
        config = next((p for p in snapshot.providers if p.name == provider), None)
        if config is None:
            left_out = next((m for m in snapshot.misconfigured if m.name == provider), None)
            if left_out is not None:
                raise CommandError(f"{provider} is misconfigured: {left_out.reason}")
            raise CommandError(f"No enabled provider named {provider!r} "
                               f"(enabled: {', '.join(p.name for p in snapshot.providers)}).")
        wait = timeout or min(config.timeout, PROBE_TIMEOUT_CAP)
        started = time.perf_counter()
        try:
            outcome, kind = call_provider(config, wait)
        except Exception as exc:  # an adapter bug: report it like a failure
            outcome, kind = "error", type(exc).__name__
        ms = (time.perf_counter() - started) * 1000
        line = (f"{provider} ({config.kind} {config.model}): {outcome} in {ms:.0f} ms"
                + (f", error {kind}" if kind else "") + " (not recorded in the breaker)")
        if outcome != "ok":
            raise CommandError(line)
        self.stdout.write(line)
