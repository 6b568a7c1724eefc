"""A fake LLM upstream: a real loopback HTTP/1.1 server speaking OpenAI, Anthropic and Ollama.

Tests, benchmarks and the demo point providers at it so the proxy talks to a real network
peer. Faults (error statuses, delays, resets, broken or slow streams, auth checks) can be
switched per *scope* at run time, from Python or over HTTP, so one server can play several
independent upstreams: ``/primary/v1/chat/completions`` is scope ``"primary"``.

Run it by hand with ``python -m flexiai_django.testing.fake_upstream --port 8001``.
"""

from __future__ import annotations

from flexiai_django.testing.fake_upstream.server import (
    DEFAULT_REPLY_PREFIX,
    FakeUpstream,
    Fault,
    RecordedRequest,
    main,
)

__all__ = ["DEFAULT_REPLY_PREFIX", "FakeUpstream", "Fault", "RecordedRequest", "main"]
