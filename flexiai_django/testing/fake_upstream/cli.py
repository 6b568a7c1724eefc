"""The command line: serve a fake upstream in the foreground until Ctrl-C.

What ``python -m flexiai_django.testing.fake_upstream`` runs (``manage.py
flexiai_fake_upstream`` does the same from Django); kept apart so importing the package
for tests pulls in no argument parsing.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from flexiai_django.testing.fake_upstream.server import FakeUpstream


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fake upstream in the foreground, for the demo and manual poking."""
    parser = argparse.ArgumentParser(
        prog="python -m flexiai_django.testing.fake_upstream",
        description="Fake OpenAI/Anthropic/Ollama upstream with run-time fault injection.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args(argv)
    upstream = FakeUpstream(args.host, args.port)
    print(f"fake upstream listening on {upstream.url}", flush=True)
    upstream.serve_forever()
    return 0
