"""Provider adapters, one per API kind, found by kind through ``FLEXIAI["ADAPTERS"]``."""

from __future__ import annotations

from functools import cache

from django.utils.module_loading import import_string

from flexiai_django.conf import get_settings

from .base import ProviderAdapter, ProviderConfig

BUILTIN_ADAPTERS = {
    "openai": "flexiai_django.providers.openai.OpenAIAdapter",
    "openai_compatible": "flexiai_django.providers.openai.OpenAICompatibleAdapter",
    "anthropic": "flexiai_django.providers.anthropic.AnthropicAdapter",
    "ollama": "flexiai_django.providers.ollama.OllamaAdapter",
}

__all__ = ["BUILTIN_ADAPTERS", "ProviderAdapter", "ProviderConfig", "adapter_class", "get_adapter"]


@cache
def _load(path: str) -> type[ProviderAdapter]:
    cls: type[ProviderAdapter] = import_string(path)
    return cls


def adapter_class(kind: str) -> type[ProviderAdapter]:
    paths = {**BUILTIN_ADAPTERS, **get_settings().ADAPTERS}
    try:
        return _load(paths[kind])
    except KeyError:
        raise LookupError(f"no adapter for provider kind {kind!r}") from None


def get_adapter(config: ProviderConfig) -> ProviderAdapter:
    return adapter_class(config.kind)(config)
