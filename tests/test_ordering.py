"""Routing order is pure: priority first, then a weighted shuffle driven by an injected rng."""

import random
from collections import Counter

import pytest

from flexiai_django.ordering import UnknownModel, order, select
from flexiai_django.providers.base import ProviderConfig


def p(name, priority=100, weight=1, model=None):
    return ProviderConfig(name=name, kind="openai", base_url="", model=model or f"{name}-m",
                          priority=priority, weight=weight)


def names(providers):
    return [x.name for x in providers]


def test_lower_priority_numbers_go_first():
    assert names(order([p("c", 3), p("a", 1), p("b", 2)])) == ["a", "b", "c"]


def test_weights_share_the_lead_among_equal_priorities():
    rng = random.Random(7)
    leads = Counter(order([p("heavy", weight=3), p("light", weight=1)], rng.random)[0].name
                    for _ in range(4000))
    assert leads["heavy"] / 4000 == pytest.approx(0.75, abs=0.03)


def test_weight_zero_is_only_a_last_resort():
    rng = random.Random(1)
    for _ in range(200):
        assert names(order([p("spare", weight=0), p("main", weight=1)], rng.random)) == [
            "main", "spare"]


def test_weights_never_reorder_across_priorities():
    rng = random.Random(3)
    for _ in range(200):
        assert names(order([p("b", 2, weight=100), p("a", 1, weight=1)], rng.random)) == [
            "a", "b"]


def test_select_by_provider_name_then_model_id():
    providers = [p("a", model="shared"), p("b", model="shared"), p("c")]
    assert names(select(providers, None)) == ["a", "b", "c"]
    assert names(select(providers, "c")) == ["c"]
    assert names(select(providers, "shared")) == ["a", "b"]


def test_an_alias_routes_to_its_group_or_to_everyone():
    providers = [p("a"), p("b"), p("c")]
    aliases = {"auto": None, "cheap": ["c", "a"]}
    assert names(select(providers, "auto", aliases)) == ["a", "b", "c"]
    assert names(select(providers, "cheap", aliases)) == ["a", "c"]


def test_select_refuses_an_unknown_model():
    with pytest.raises(UnknownModel):
        select([p("a")], "nope")
