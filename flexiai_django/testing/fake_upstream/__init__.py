"""A fake LLM upstream: a real loopback HTTP/1.1 server speaking OpenAI, Anthropic and Ollama.

Tests, benchmarks and the demo point providers at it so the proxy talks to a real network
peer. Faults (error statuses, delays, resets, broken or slow streams, auth checks) can be
switched per *scope* at run time, from Python or over HTTP, so one server can play several
independent upstreams: ``/primary/v1/chat/completions`` is scope ``"primary"``.

Run it by hand with ``python -m flexiai_django.testing.fake_upstream --port 8001``.

Modules, one job each: ``faults`` (the Fault model and how a scope's fault is used up),
``state`` (scopes, recordings, counters, behind one lock), ``formats`` (one module per API
format behind ``formats.base.ApiFormat``), ``transport`` (HTTP/1.1 plumbing), ``control``
(the ``/_fault``, ``/_reset``, ``/_stats``, ``/_health`` endpoints), ``handler`` (routing
and acting on faults), ``server`` (``FakeUpstream``), ``cli`` (``main``).
"""

from __future__ import annotations

from flexiai_django.testing.fake_upstream.cli import main
from flexiai_django.testing.fake_upstream.faults import Fault
from flexiai_django.testing.fake_upstream.server import FakeUpstream
from flexiai_django.testing.fake_upstream.state import DEFAULT_REPLY_PREFIX, RecordedRequest

__all__ = ["DEFAULT_REPLY_PREFIX", "FakeUpstream", "Fault", "RecordedRequest", "main"]
