"""Warming providers (a cold model being loaded) get no traffic, or only a trickle.

A provider marked ``warming`` (admin, or whoever starts a replica) is left out of a
request's candidates, except for ``WARMING_TRICKLE`` of requests (0 by default), drawn
independently per warming provider so each gets that share wherever it stands in the
order. The warm-up prober (:mod:`flexiai_django.warmup`) clears the flag once the
provider answers. Pure: the randomness is injected.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar


class _MayBeWarming(Protocol):
    @property
    def warming(self) -> bool: ...


P = TypeVar("P", bound=_MayBeWarming)


def admit(providers: Sequence[P], trickle: float, rand: Callable[[], float]) -> list[P]:
    """``providers`` in order, without the warming ones a request does not trickle to.
    With no warming provider (the usual case) no random number is drawn."""
    if not any(p.warming for p in providers):
        return list(providers)
    return [p for p in providers if not p.warming or (trickle > 0 and rand() < trickle)]
