"""Unique ids for requests and answers, drawn without a system call.

``uuid.uuid4()`` reads ``os.urandom``, which releases the GIL around its ``getrandom()``
call: under load a waiting thread (a cache write, a Redis call) takes the GIL there and
the event loop waits for it back, about 50 µs per id in ``bench/README.md``'s profile.
These ids must be unique, not secret: a generator seeded from ``os.urandom`` once per
process (and again in a forked child) gives 128 random bits without a system call.
"""

from __future__ import annotations

import os
import random

_random = random.Random()  # noqa: S311 (unique, not secret: see above)
os.register_at_fork(after_in_child=_random.seed)


def hex_id(bits: int = 128) -> str:
    """``bits`` random bits as lowercase hex (``uuid4().hex`` length by default)."""
    return format(_random.getrandbits(bits), f"0{bits // 4}x")
