"""Serve the fake LLM upstream in the foreground, for demos and benchmarks."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from flexiai_django.testing.fake_upstream import FakeUpstream


class Command(BaseCommand):
    help = ("Run a fake OpenAI/Anthropic/Ollama upstream with fault injection "
            "(POST /_fault to break it).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8001)

    def handle(self, *args: Any, host: str, port: int, **options: Any) -> None:
        server = FakeUpstream(host, port)
        self.stdout.write(f"fake upstream listening on {server.url}")
        self.stdout.flush()
        server.serve_forever()
