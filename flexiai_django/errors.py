"""One error taxonomy for every provider.

Each class says two things the fallback chain needs: does it count against the
provider's breaker (``trips_breaker``), and may the next provider be tried
(``fails_over``). Messages never carry request bodies or keys.
"""

from __future__ import annotations

from typing import Any


class FlexiAIError(Exception):
    """Base class of everything this app raises."""


class ProviderError(FlexiAIError):
    """A provider call did not produce an answer."""

    kind = "provider_error"
    trips_breaker = True
    fails_over = True

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status = status
        self.retry_after = retry_after

    def __str__(self) -> str:
        where = f"{self.provider}: " if self.provider else ""
        return f"{where}{self.message}"


class UpstreamTimeout(ProviderError):
    kind = "timeout"


class UpstreamConnectionError(ProviderError):
    """The connection failed or was lost. ``replied``: after the upstream had begun its
    reply, so the provider may have done the work (not worth a same-provider retry)."""

    kind = "connection_error"

    def __init__(self, message: str, *, replied: bool = False, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.replied = replied


class RateLimited(ProviderError):
    kind = "rate_limited"


class UpstreamServerError(ProviderError):
    kind = "server_error"


class MalformedReply(ProviderError):
    kind = "malformed_reply"


class StreamInterrupted(ProviderError):
    """The upstream failed after the first chunk reached the caller: too late to fail over."""

    kind = "stream_interrupted"


class ProviderAuthError(ProviderError):
    """401/403/404 from the provider: our configuration (key, model, URL) is wrong.

    Not an outage, so the breaker is left alone, but another provider configured
    correctly can still answer, so the chain goes on.
    """

    kind = "auth_error"
    trips_breaker = False


class BadRequest(ProviderError):
    """400/413/422: the request itself is wrong; any provider would refuse it."""

    kind = "bad_request"
    trips_breaker = False
    fails_over = False


class ContextLengthExceeded(BadRequest):
    """The prompt is longer than this provider's context window.

    Not an outage (no trip), and not the caller's fault everywhere: a provider with a
    larger window may take it, so the chain goes on. When none does, the caller gets it
    as a 400 ``context_length_exceeded``, never a cached or degraded answer.
    """

    kind = "context_length_exceeded"
    fails_over = True


class UnsupportedParameters(FlexiAIError):
    """No provider the request may use can carry all of its fields (HTTP 400).

    ``missing`` maps each such provider to the fields it cannot carry.
    """

    def __init__(self, missing: dict[str, tuple[str, ...]]) -> None:
        self.missing = missing
        self.fields = tuple(sorted({f for fields in missing.values() for f in fields}))
        where = "; ".join(f"provider '{name}' cannot carry {', '.join(map(repr, fields))}"
                          for name, fields in missing.items())
        super().__init__(f"No provider for this model can honour every request field: {where}.")


class CircuitOpen(FlexiAIError):
    """The breaker refused the call without sending it."""

    def __init__(self, name: str, state: str, retry_after: float | None) -> None:
        super().__init__(f"circuit {name!r} is {state}")
        self.name = name
        self.state = state
        self.retry_after = retry_after


class NoProviderAvailable(FlexiAIError):
    """Every tier of the fallback chain failed; HTTP callers answer 503 + Retry-After."""

    def __init__(
        self,
        message: str = "No provider is available to serve this request.",
        *,
        retry_after: float = 30,
        attempts: int = 0,
        errors: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.attempts = attempts
        self.errors = errors or []


class ConfigurationError(FlexiAIError):
    """A provider row or setting cannot be used (e.g. an undecryptable key)."""
