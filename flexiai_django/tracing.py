"""OpenTelemetry spans for each request and each provider attempt (the ``tracing`` extra).

Off unless ``FLEXIAI["TRACING"]`` is True and ``opentelemetry-api`` is importable; off,
each helper costs one settings lookup and makes no span. Attributes follow the GenAI
semantic conventions (``gen_ai.*``, ``error.type``) plus ``flexiai.*`` for the chain's own
words (tier, outcome, retries, fallback). Prompts, answers and keys never go in a span.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from flexiai_django.conf import get_settings

if TYPE_CHECKING:
    from flexiai_django.chat_types import ChatRequest, ChatResult, Completion
    from flexiai_django.providers.base import ProviderConfig

try:
    from opentelemetry import trace as _trace
except ImportError:  # the extra is not installed: tracing stays off
    _trace = None  # type: ignore[assignment]

#: A ``TracerProvider`` to use instead of the global one (tests, or an app keeping its own).
tracer_provider: Any = None

SCOPE = "flexiai_django"


def enabled() -> bool:
    return _trace is not None and bool(get_settings().TRACING)


def _tracer() -> Any:
    return _trace.get_tracer(SCOPE, tracer_provider=tracer_provider)


def _error_type(exc: BaseException) -> str:
    kind = getattr(exc, "kind", None)
    return kind if isinstance(kind, str) else type(exc).__qualname__


@contextlib.contextmanager
def request_span(request: ChatRequest, streamed: bool = False,
                 hedged: bool = False) -> Iterator[Any]:
    """The span around one request's trip down the chain (current while it runs, so the
    attempt spans are its children); None when tracing is off. Ends with the error's
    type as ``error.type`` (never its message) when the chain raises."""
    if not enabled():
        yield None
        return
    name = f"chat {request.model}" if request.model else "chat"
    attributes = {"gen_ai.operation.name": "chat", "flexiai.streamed": streamed,
                  "flexiai.hedged": hedged}
    if request.model:
        attributes["gen_ai.request.model"] = request.model
    with _tracer().start_as_current_span(name, attributes=attributes,
                                         record_exception=False,
                                         set_status_on_exception=False) as span:
        try:
            yield span
        except BaseException as exc:
            span.set_attribute("error.type", _error_type(exc))
            span.set_status(_trace.Status(_trace.StatusCode.ERROR))
            raise


def request_done(span: Any, result: ChatResult) -> None:
    """Say on the request span how it was answered: tier, provider, model, tokens."""
    if span is None:
        return
    span.set_attribute("flexiai.tier", result.tier)
    span.set_attribute("flexiai.fallback", result.tier != "provider")
    span.set_attribute("flexiai.attempts", result.attempts)
    span.set_attribute("flexiai.continued", result.continued)
    if result.provider:
        span.set_attribute("flexiai.provider", result.provider)
    if result.model:
        span.set_attribute("gen_ai.response.model", result.model)
    if result.tier == "provider":
        span.set_attribute("gen_ai.usage.input_tokens", result.usage.prompt_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", result.usage.completion_tokens)


def attempt_span(provider: ProviderConfig, retry: int) -> Any:
    """Start (not make current) the span of one call to ``provider``; None when off. The
    caller ends it with :func:`attempt_done`."""
    if not enabled():
        return None
    return _tracer().start_span(f"chat {provider.model}", attributes={
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider.kind,
        "gen_ai.request.model": provider.model,
        "flexiai.provider": provider.name,
        "flexiai.retries": retry,
    }, record_exception=False, set_status_on_exception=False)


def attempt_done(span: Any, outcome: str, completion: Completion | None = None) -> None:
    """End an attempt span: ``outcome`` is "ok", a failure kind, or "aborted"."""
    if span is None:
        return
    span.set_attribute("flexiai.attempt.outcome", outcome)
    if completion is not None:
        if completion.model:
            span.set_attribute("gen_ai.response.model", completion.model)
        span.set_attribute("gen_ai.usage.input_tokens", completion.usage.prompt_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", completion.usage.completion_tokens)
    else:
        span.set_attribute("error.type", outcome)
        span.set_status(_trace.Status(_trace.StatusCode.ERROR))
    span.end()
