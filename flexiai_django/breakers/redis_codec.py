"""How breaker state is written in Redis: the script's source, a state read back from
the script's JSON answer or a raw ``HGETALL``, and a worker's open state written back
when Redis lost it (restarted empty)."""

from __future__ import annotations

from importlib import resources
from typing import Any

import orjson

from .state import BreakerConfig, BreakerState, State


def script_source() -> str:
    return resources.files("flexiai_django.breakers").joinpath("breaker.lua").read_text()


def _number(value: Any) -> float | None:
    """A number field; the script's JSON has ``false`` for a field it deleted."""
    return None if value is None or value is False or value == "" else float(value)


def parse_state(fields: dict[str, Any], probes: list[float] | dict[str, Any]) -> BreakerState:
    """A state from the script's JSON or a raw HGETALL (values are strings there)."""
    get = fields.get
    return BreakerState(
        state=State(get("state") or State.CLOSED),
        failures=int(float(get("failures") or 0)),
        successes=int(float(get("successes") or 0)),
        openings=int(float(get("openings") or 0)),
        opened_at=_number(get("opened_at")),
        retry_at=_number(get("retry_at")),
        probes=tuple(float(p) for p in probes) if isinstance(probes, list) else (),
        version=int(float(get("version") or 0)),
        last_failure_at=_number(get("last_failure_at")),
        last_error=get("last_error") or None,
        changed_at=_number(get("changed_at")),
        total_failures=int(float(get("total_failures") or 0)),
        active_probes=int(float(get("active_probes") or 0)),
        last_probe_at=_number(get("last_probe_at")),
        last_probe=get("last_probe") or None,
        cooldown_until=_number(get("cooldown_until")),
    )


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def decode(raw: dict[Any, Any]) -> dict[str, str]:
    return {text(k): text(v) for k, v in raw.items()}


#: States a worker keeps, and writes back, when Redis lost them: a restarted Redis must
#: not hand a still-dead provider another round of failures (or undo an admin's stop).
KEPT = (State.OPEN, State.FORCED_OPEN, State.DISABLED)


def seed_of(state: BreakerState | None) -> str:
    """The script's ``seed`` argument: the fields to write back if Redis lost this breaker,
    or ``""`` when there is nothing worth keeping (closed, or never shared: version 0)."""
    if state is None or state.state not in KEPT or state.version <= 0:
        return ""
    fields = {k: (v if isinstance(v, str) else repr(v))
              for k, v in state.to_dict().items() if v is not None and k != "probes"}
    return orjson.dumps(fields).decode()


def lost_by_redis(seen_clear: str, current_clear: str) -> bool:
    """Whether a breaker missing from Redis was lost (restart, wipe), not cleared on
    purpose: ``clear()`` leaves a fresh token, a wipe leaves none."""
    return current_clear in ("", seen_clear)


def script_args(op: str, name: str, cfg: BreakerConfig, *, rand: float, now: float | None,
                arg: str = "", probe: bool = False, error: str | None = None,
                member: str = "", seed: str = "", seen_clear: str = "") -> list[Any]:
    """``ARGV`` of ``breaker.lua``, in its order: the one place Python names the 17 values.

    ``now`` None lets the script use Redis's clock (``TIME``); ``member`` is the probe
    reservation of an ``acquire``; ``seed`` this worker's open state to write back if
    Redis lost the breaker; ``seen_clear`` the last ``clear()`` token this worker read.
    """
    return [op, name, cfg.failure_threshold, cfg.success_threshold, cfg.open_seconds,
            cfg.max_open_seconds, cfg.jitter, cfg.half_open_max_calls, cfg.probe_ttl,
            rand, "" if now is None else repr(now), arg, "1" if probe else "0",
            error or "", member, seed, seen_clear]
