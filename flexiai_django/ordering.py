"""Which providers a request may use, and in what order. Pure: the randomness is injected."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence

from flexiai_django.errors import FlexiAIError
from flexiai_django.providers.base import ProviderConfig


class UnknownModel(FlexiAIError, LookupError):
    """The request named a model that no enabled provider serves."""


def select(
    providers: Iterable[ProviderConfig],
    model: str | None,
    aliases: Mapping[str, Sequence[str] | None] | None = None,
) -> list[ProviderConfig]:
    """The providers ``model`` names: all (no model, or an alias of None), an alias's group,
    one provider by name, or those serving that model id."""
    providers = list(providers)
    if not model:
        return providers
    if aliases and model in aliases:
        group = aliases[model]
        return providers if group is None else [p for p in providers if p.name in group]
    by_name = [p for p in providers if p.name == model]
    if by_name:
        return by_name
    by_model = [p for p in providers if p.model == model]
    if by_model:
        return by_model
    raise UnknownModel(model)


def order(
    providers: Sequence[ProviderConfig], rand: Callable[[], float] = random.random
) -> list[ProviderConfig]:
    """Ascending priority; within one priority a weighted shuffle (weight 0 goes last).

    The weighted shuffle draws key = u ** (1 / weight) and sorts descending, so a
    provider with weight 3 leads three times as often as one with weight 1.
    """

    def key(p: ProviderConfig) -> tuple[int, float]:
        u = rand()
        return (p.priority, -(u ** (1.0 / p.weight)) if p.weight > 0 else 1.0)

    return sorted(providers, key=key)
