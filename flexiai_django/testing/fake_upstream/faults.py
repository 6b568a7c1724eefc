"""The fault model: what a scope of the fake upstream does wrong, and for how many requests.

Kept apart from the server so a new kind of fault is one field here (plus the code in
``handler`` that acts on it), and so the rules for picking a request's fault — an armed
fault applies until its ``times`` are used up — live in one place.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

# name -> (accepted types, None allowed)
_FAULT_TYPES: dict[str, tuple[tuple[type, ...], bool]] = {
    "status": ((int,), True),
    "retry_after": ((int, float), True),
    "retry_after_date": ((bool,), False),
    "delay": ((int, float), False),
    "reset": ((bool,), False),
    "malformed": ((bool,), False),
    "truncated": ((bool,), False),
    "stream_fail_after": ((int,), True),
    "chunk_delay": ((int, float), False),
    "times": ((int,), True),
    "auth_key": ((str,), True),
    "too_long": ((bool,), False),
    "refusal": ((bool,), False),
    "no_end_marker": ((bool,), False),
    "first_token_delay": ((int, float), False),
    "stall_after": ((int,), True),
    "stall_for": ((int, float), False),
    "malformed_chunk_at": ((int,), True),
    "prefill_refused": ((bool,), False),
    "context_window": ((int,), True),
    "down_for": ((int, float), True),
}


@dataclasses.dataclass(frozen=True)
class Fault:
    """How one scope misbehaves; fields combine (e.g. ``status=429, retry_after=1``)."""

    status: int | None = None
    retry_after: float | None = None
    #: Send ``Retry-After`` as an HTTP date (now + ``retry_after``) instead of seconds.
    retry_after_date: bool = False
    delay: float = 0.0
    reset: bool = False
    malformed: bool = False
    truncated: bool = False
    stream_fail_after: int | None = None
    chunk_delay: float = 0.0
    times: int | None = None
    auth_key: str | None = None
    #: Refuse the prompt as longer than the context window, in the format's own words.
    too_long: bool = False
    #: Decline to answer: OpenAI's ``refusal`` field, Anthropic's ``refusal`` stop reason.
    refusal: bool = False
    #: End a stream cleanly but without its last frame (OpenAI's ``[DONE]``, Anthropic's
    #: ``message_stop``; for Ollama the last line, which carries ``done`` and the finish).
    no_end_marker: bool = False
    #: Stream: pause after the preamble, before the first content piece (a slow first
    #: token). Plain call: pause before the reply.
    first_token_delay: float = 0.0
    #: Stream: after this many content pieces, go silent for ``stall_for`` seconds, then
    #: carry on.
    stall_after: int | None = None
    stall_for: float = 30.0
    #: Stream: one unparseable frame just before content piece N, then carry on.
    malformed_chunk_at: int | None = None
    #: Refuse (400) a request whose last message is the assistant's: a prefill.
    prefill_refused: bool = False
    #: Refuse (400, too long) a request whose prompt has more words than this.
    context_window: int | None = None
    #: A schedule: the fault applies for this many seconds after it is armed, then the
    #: scope is healthy ("down for 30 s, then back").
    down_for: float | None = None

    def __post_init__(self) -> None:
        """Reject bad values up front: a typo'd fault should fail the test setting it."""
        for name, (types, nullable) in _FAULT_TYPES.items():
            value = getattr(self, name)
            if value is None and nullable:
                continue
            if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
                raise ValueError(f"fault field {name!r} has invalid value {value!r}")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"fault field 'status' must be 100..599, got {self.status}")
        for name in ("retry_after", "delay", "chunk_delay", "stream_fail_after",
                     "first_token_delay", "stall_after", "stall_for", "malformed_chunk_at",
                     "context_window", "down_for"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"fault field {name!r} must be >= 0, got {value}")
        if self.times is not None and self.times < 1:
            raise ValueError(f"fault field 'times' must be >= 1, got {self.times}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        """Build from JSON-ish data, naming any unknown field (used by the HTTP control API)."""
        unknown = sorted(set(data) - set(_FAULT_TYPES))
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, for ``/_stats``."""
        return dataclasses.asdict(self)


def shown(fault: Fault | None) -> dict[str, Any] | None:
    """A fault as ``/_fault`` and ``/_stats`` show it: its fields, or None when healthy."""
    return fault.to_dict() if fault is not None else None


@dataclasses.dataclass
class ArmedFault:
    """The fault one scope currently has, and how many more requests it applies to.

    Not locked: the caller (the server's shared state) holds its own lock around every use.
    """

    fault: Fault | None = None
    remaining: int | None = None
    #: When a ``down_for`` fault stops applying (monotonic seconds).
    until: float | None = None

    def arm(self, fault: Fault | None) -> None:
        """Apply ``fault`` (None: healthy) to the next ``fault.times`` requests, or all,
        and for at most ``fault.down_for`` seconds from now."""
        self.fault = fault
        self.remaining = fault.times if fault is not None else None
        down_for = fault.down_for if fault is not None else None
        self.until = time.monotonic() + down_for if down_for is not None else None

    def clear(self) -> None:
        self.fault = self.remaining = self.until = None

    def take(self) -> Fault | None:
        """The fault for one arriving request, using up one of a ``times``-limited fault."""
        if self.until is not None and time.monotonic() >= self.until:
            self.clear()
        fault = self.fault
        if fault is not None and self.remaining is not None:
            self.remaining -= 1
            if self.remaining <= 0:
                self.clear()
        return fault
