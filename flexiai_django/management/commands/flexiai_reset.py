"""Close providers' breakers in the shared store: the admin's "Reset breaker" action and
``POST /v1/providers/<name>/reset`` from a shell. Every worker sees it (version bump)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from flexiai_django.breakers import get_store
from flexiai_django.breakers.state import State
from flexiai_django.models import Provider


class Command(BaseCommand):
    help = "Reset (close) the breakers of the named providers, or of all with --all."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("providers", nargs="*", metavar="provider")
        parser.add_argument("--all", action="store_true", help="Every provider in the table.")

    def handle(self, *args: Any, providers: list[str], **options: Any) -> None:
        if options["all"] == bool(providers):
            raise CommandError("Name one or more providers, or pass --all (not both).")
        rows = list(Provider.objects.order_by("priority", "name") if options["all"]
                    else Provider.objects.filter(name__in=providers))
        unknown = sorted(set(providers) - {p.name for p in rows})
        if unknown:
            known = ", ".join(Provider.objects.order_by("name").values_list("name", flat=True))
            raise CommandError(f"No provider named {', '.join(map(repr, unknown))} "
                               f"(known: {known or 'none'}). Nothing was reset.")
        store = get_store()
        for provider in rows:
            state = store.force(provider.breaker_name, State.CLOSED)
            self.stdout.write(f"{provider.name}: breaker {state.state.value}")
