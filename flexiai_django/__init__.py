"""flexiai-django: keep a Django deployment answering when its LLM providers fail.

The public API is imported lazily, so adding the app to ``INSTALLED_APPS`` does not
import models before the app registry is ready.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "chat": "flexiai_django.services",
    "achat": "flexiai_django.services",
    "stream": "flexiai_django.services",
    "astream": "flexiai_django.services",
    "llm": "flexiai_django.services",
    "breaker": "flexiai_django.breakers",
    "Breaker": "flexiai_django.breakers",
    "ChatResult": "flexiai_django.chat_types",
    "ChatRequest": "flexiai_django.chat_types",
    "Message": "flexiai_django.chat_types",
    "FlexiAIError": "flexiai_django.errors",
    "ProviderError": "flexiai_django.errors",
    "BadRequest": "flexiai_django.errors",
    "CircuitOpen": "flexiai_django.errors",
    "NoProviderAvailable": "flexiai_django.errors",
    "StreamInterrupted": "flexiai_django.errors",
    "ContextLengthExceeded": "flexiai_django.errors",
    "UnsupportedParameters": "flexiai_django.errors",
    "InvalidRequest": "flexiai_django.request_errors",
    "UnknownModel": "flexiai_django.ordering",
}

__all__ = [
    "BadRequest", "Breaker", "ChatRequest", "ChatResult", "CircuitOpen",
    "ContextLengthExceeded", "FlexiAIError", "InvalidRequest", "Message", "NoProviderAvailable",
    "ProviderError", "StreamInterrupted", "UnknownModel", "UnsupportedParameters", "achat",
    "astream", "breaker", "chat", "llm", "stream",
]

if TYPE_CHECKING:
    from flexiai_django.breakers import Breaker, breaker
    from flexiai_django.chat_types import ChatRequest, ChatResult, Message
    from flexiai_django.errors import (
        BadRequest,
        CircuitOpen,
        ContextLengthExceeded,
        FlexiAIError,
        NoProviderAvailable,
        ProviderError,
        StreamInterrupted,
        UnsupportedParameters,
    )
    from flexiai_django.ordering import UnknownModel
    from flexiai_django.request_errors import InvalidRequest
    from flexiai_django.services import achat, astream, chat, llm, stream


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'flexiai_django' has no attribute {name!r}") from None
    return getattr(import_module(module), name)
