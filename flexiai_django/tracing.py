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


def _request_start(request: ChatRequest, streamed: bool, hedged: bool) -> Any:
    attributes: dict[str, Any] = {"gen_ai.operation.name": "chat",
                                  "flexiai.streamed": streamed, "flexiai.hedged": hedged}
    if request.model:
        attributes["gen_ai.request.model"] = request.model
    return _tracer().start_span(f"chat {request.model}" if request.model else "chat",
                                attributes=attributes, record_exception=False,
                                set_status_on_exception=False)


@contextlib.contextmanager
def request_span(request: ChatRequest, hedged: bool = False) -> Iterator[Any]:
    """The span around one call's trip down the chain (current while it runs, so the
    attempt spans are its children); None when tracing is off. Ends with the error's
    type as ``error.type`` (never its message) when the chain raises."""
    if not enabled():
        yield None
        return
    span = _request_start(request, streamed=False, hedged=hedged)
    with _trace.use_span(span, end_on_exit=True, record_exception=False,
                         set_status_on_exception=False):
        try:
            yield span
        except BaseException as exc:
            failed(span, _error_type(exc))
            raise


def stream_span(request: ChatRequest, hedged: bool = False) -> Any:
    """A stream's request span, or None when off: started, not current (the stream
    outlives the call that opens it); its attempt spans name it as their parent, and
    :func:`stream_done` ends it."""
    return _request_start(request, streamed=True, hedged=hedged) if enabled() else None


def stream_done(span: Any, result: ChatResult | None = None,
                error: BaseException | str | None = None) -> None:
    """End a stream's request span: answered (``result``), or failed or abandoned."""
    if span is None:
        return
    if result is not None:
        request_done(span, result)
    if error is not None:
        failed(span, error if isinstance(error, str) else _error_type(error))
    span.end()


def failed(span: Any, error_type: str) -> None:
    span.set_attribute("error.type", error_type)
    span.set_status(_trace.Status(_trace.StatusCode.ERROR))


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


def attempt_span(provider: ProviderConfig, retry: int, parent: Any = None) -> Any:
    """Start (not make current) the span of one call to ``provider``, a child of
    ``parent`` or else of the current span; None when off. :func:`attempt_done` ends it."""
    if not enabled():
        return None
    context = None if parent is None else _trace.set_span_in_context(parent)
    return _tracer().start_span(context=context, name=f"chat {provider.model}", attributes={
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
        failed(span, outcome)
    span.end()
