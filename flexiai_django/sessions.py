"""Sessions: keep one conversation on one provider while it can serve (warm prompt caches).

Pure rules, no I/O: :func:`pin_first` puts the pinned provider at the head of the chain's
candidates (the walk still skips it when its breaker refuses or the request does not fit
it), and :func:`moved_to` says where a session goes after an answer: to the provider
that answered, only when the pinned one was tried and could not serve (its breaker
refused, or it failed). Where sessions are kept is :mod:`flexiai_django.session_store`.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Sequence
from typing import TypeVar

from flexiai_django.chat_types import Attempt

#: A session id: short and URL-safe, so it fits a header, a path and a Redis key as is.
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: Trail outcomes that do not say the pinned provider could not serve: the request did not
#: fit it, a hedge answered first and its call was cancelled, or all its in-flight slots
#: were taken for the moment. The session stays.
STAYS = frozenset({"ok", "unsupported", "too_long", "cancelled", "skipped:at_capacity"})

P = TypeVar("P")


def valid_id(session_id: object) -> bool:
    return isinstance(session_id, str) and SESSION_ID.fullmatch(session_id) is not None


def new_id() -> str:
    """A fresh id: 128 random bits, URL-safe."""
    return "sess_" + secrets.token_urlsafe(16)


def pin_first(candidates: Sequence[P], pin: str | None) -> list[P]:
    """``candidates`` with the one named ``pin`` moved to the front, the rest in order.

    A pin that is not among the candidates (another model was asked for) changes nothing.
    """
    ordered = list(candidates)
    if pin is None:
        return ordered
    for i, candidate in enumerate(ordered):
        if getattr(candidate, "name", None) == pin:
            return [candidate, *ordered[:i], *ordered[i + 1:]]
    return ordered


def moved_to(pin: str | None, answered: str | None, trail: Iterable[Attempt]) -> str | None:
    """The provider a session moves to after an answer, or None to stay.

    It moves when a provider other than the pinned one answered and the pinned one was
    tried for this request and could not serve (refused by its breaker, or failed); not
    when the answer came from a fallback tier (``answered`` None), nor when the pinned
    provider was only skipped because this request did not fit it or was only outrun by
    a hedge, nor when it was not a candidate at all. A session with no pin yet is pinned
    to whoever answered.
    """
    if answered is None or answered == pin:
        return None
    if pin is None:
        return answered
    outcomes = [a.outcome for a in trail if a.provider == pin]
    if any(o not in STAYS for o in outcomes):
        return answered
    return None
