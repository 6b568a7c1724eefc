"""Take secrets out of text an upstream wrote before any of it is shown, logged or stored.

An upstream's error message may quote the key we sent: whole, upper-cased, cut short,
or in its own masked form (``sk-proj-****…abcd``). :func:`redact` removes all of that,
and anything that merely looks like a secret, *before* the text is shortened, so a
key cut at the length limit can't leak partly.

Guarantee: for a secret made of the usual key characters (letters, digits, ``-``,
``_``), no 6-character piece of it survives in the result, in any letter case.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

#: What replaces every removed run. ``*`` is not a key character, so removed runs
#: never join their neighbours into a new piece of a key.
MARK = "***"
#: Any piece of a secret at least this long is removed (shorter ones are too common).
MIN_PIECE = 6
#: Text read at most; far more than is ever shown, so nothing near the cut is shown.
MAX_INPUT = 8192

_KEYISH = r"[A-Za-z0-9_\-]"
_PATTERNS = (
    # A key already masked by the upstream: "sk-proj-****abcd", "sk-...****wxyz".
    # (Starts only where a run starts, so a long run without "*" costs one pass.)
    re.compile(r"(?<![A-Za-z0-9_\-.…])[A-Za-z0-9_\-.…]*\*{2,}[A-Za-z0-9_\-.…*]*"),
    # Authorization values and well-known key shapes.
    re.compile(r"\b(?:bearer|basic)\s+[^\s,;\"']+", re.IGNORECASE),
    re.compile(r"\b(?:x-api-key|api[_-]?key|authorization)\s*[:=]\s*[^\s,;\"']+",
               re.IGNORECASE),
    re.compile(rf"\b(?:sk|rk|fxa)[-_]{_KEYISH}{{6,}}", re.IGNORECASE),
    # Long hex runs.
    re.compile(r"(?<![A-Za-z0-9])[0-9A-Fa-f]{24,}(?![A-Za-z0-9])"),
)
#: Long base64-ish runs; redacted only when they look random (upper, lower and digits).
_LONG_RUN = re.compile(r"[A-Za-z0-9+/=_\-]{24,}")


def _folded(text: str, fold: Callable[[str], str]) -> tuple[str, list[int]]:
    """``text`` folded one character at a time, and for each folded character the index of
    the character of ``text`` it came from (``ß`` → ``ss``, ``İ`` → ``i̇``)."""
    out: list[str] = []
    origin: list[int] = []
    for i, c in enumerate(text):
        f = fold(c)
        out.append(f)
        origin.extend([i] * len(f))
    return "".join(out), origin


def _mark(marked: bytearray, start: int, end: int) -> None:
    marked[start:end] = b"\1" * (end - start)


def _looks_random(run: str) -> bool:
    return (any(c.isupper() for c in run) and any(c.islower() for c in run)
            and any(c.isdigit() for c in run))


def _mark_secret(text: str, secret: str, marked: bytearray) -> None:
    """Mark every stretch of ``text`` that is a piece (≥ MIN_PIECE chars) of ``secret``.

    In lower case and case-folded (so ``SK-…``, ``ſk-…`` and the Kelvin sign count). Every
    such piece is covered by its MIN_PIECE-long windows, each of which is itself a piece
    of the secret, so marking matching windows marks exactly the pieces.
    """
    for fold in (str.lower, str.casefold):
        low, origin = _folded(text, fold)
        sec = fold(secret)
        if len(sec) < MIN_PIECE:
            spans = [(m.start(), m.end()) for m in re.finditer(re.escape(sec), low)]
        else:
            windows = {sec[i:i + MIN_PIECE] for i in range(len(sec) - MIN_PIECE + 1)}
            spans = [(i, i + MIN_PIECE) for i in range(len(low) - MIN_PIECE + 1)
                     if low[i:i + MIN_PIECE] in windows]
        for start, end in spans:
            _mark(marked, origin[start], origin[end - 1] + 1)


def redact(text: str, secrets: Iterable[str] = (), *, limit: int = 300) -> str:
    """``text`` with ``secrets`` (and secret-looking tokens) replaced by ``***``, then cut.

    Whitespace is collapsed to single spaces so the result fits on one log line; a cut
    result ends with ``…``.
    """
    text = " ".join(str(text)[:MAX_INPUT].split())
    marked = bytearray(len(text))
    for secret in secrets:
        if secret:
            _mark_secret(text, secret, marked)
    for pattern in _PATTERNS:
        for match in pattern.finditer(text):
            _mark(marked, match.start(), match.end())
    for match in _LONG_RUN.finditer(text):
        if _looks_random(match.group()):
            _mark(marked, match.start(), match.end())
    pieces: list[str] = []
    i = 0
    while i < len(text):
        j = i
        if marked[i]:
            while j < len(text) and marked[j]:
                j += 1
            pieces.append(MARK)
        else:
            while j < len(text) and not marked[j]:
                j += 1
            pieces.append(text[i:j])
        i = j
    result = "".join(pieces)
    return result if len(result) <= limit else result[:max(0, limit - 1)] + "…"
