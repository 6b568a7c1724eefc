"""Create the demo providers (idempotent: existing rows and admin edits are kept)."""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from flexiai_django.models import Provider

DEMO = (
    # name, kind, model, priority, key env var (real providers are enabled only with a key)
    ("openai", "openai", "gpt-4o-mini", 5, "OPENAI_API_KEY"),
    ("anthropic", "anthropic", "claude-3-5-haiku-latest", 6, "ANTHROPIC_API_KEY"),
    ("demo-primary", "openai_compatible", "demo-gpt", 10, ""),
    ("demo-secondary", "anthropic", "demo-claude", 20, ""),
    ("demo-local", "ollama", "demo-llama", 30, ""),
)


def _fake_base_url(upstream: str, name: str, kind: str) -> str:
    scope = f"{upstream.rstrip('/')}/{name}"
    return f"{scope}/v1" if kind in ("openai", "openai_compatible") else scope


class Command(BaseCommand):
    help = "Seed demo providers: real OpenAI/Anthropic (if their keys are set) and fake ones."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--upstream", default="http://127.0.0.1:8001",
                            help="Base URL of the fake upstream for the demo-* providers.")

    def handle(self, *args: Any, upstream: str, **options: Any) -> None:
        for name, kind, model, priority, key_env in DEMO:
            fake = not key_env
            defaults = {
                "kind": kind,
                "model": model,
                "priority": priority,
                "api_key_env": key_env,
                "base_url": _fake_base_url(upstream, name, kind) if fake else "",
                "enabled": fake or bool(os.environ.get(key_env)),
                "timeout": 5.0 if fake else 30.0,
            }
            provider, created = Provider.objects.get_or_create(name=name, defaults=defaults)
            state = "enabled" if provider.enabled else "disabled (set $" + key_env + ")"
            verb = "created" if created else "kept"
            self.stdout.write(f"  {verb:7} {provider.name:15} {provider.kind:18} {state}")
