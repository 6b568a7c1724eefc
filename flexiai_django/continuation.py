"""Continuing a broken stream on another provider: the request to send and the seam. Pure.

When a stream breaks after text reached the client, the next provider is asked to go on
from where the answer stopped (:mod:`flexiai_django.stream_resume` does the I/O). Two
things decide whether the client reads one coherent answer, and both are plain text work,
kept here without I/O so they are tested on their own:

* :func:`build` — the continuation request: the original one plus the text so far as an
  assistant *prefill* (the model writes its next words after it) where the target takes
  one, else that text and a user turn asking to continue (the setting
  ``CONTINUATION_INSTRUCTION``). A prefill is sent without its trailing whitespace
  (Anthropic refuses one that ends in whitespace); :attr:`Continuation.trimmed` keeps it.
* :class:`Seam` — models asked to continue often start by repeating the end of what was
  already written; the seam drops the longest such overlap (bounded, starting at a word
  boundary) before the continuation's text goes out.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from flexiai_django.chat_types import ChatRequest, Message

#: The longest repeat (in characters) dropped at a seam: a model repeats a few words, not
#: paragraphs, and the seam holds back at most this much text while it decides.
MAX_OVERLAP = 200
#: Characters per token, roughly (English text): what the text so far has used of the
#: answer's token limit, since a broken stream never reports its usage.
CHARS_PER_TOKEN = 4


def remaining_limit(request: ChatRequest, sent: str) -> ChatRequest:
    """``request`` with its answer's token limit less what the text so far used
    (estimated), so the stitched answer stays about as long as asked."""
    limit = request.token_limit
    if limit is None:
        return request
    left = max(1, limit - len(sent) // CHARS_PER_TOKEN)
    if request.max_tokens is not None:
        return dataclasses.replace(request, max_tokens=left)
    return dataclasses.replace(request, max_completion_tokens=left)


def not_continuable(request: ChatRequest, *, tool_calls: bool, refusal: bool) -> str | None:
    """Why a stream broken at this point cannot be continued, or None when it can.

    Only a text answer is continued: a tool call's arguments are JSON that a second model
    would restart rather than finish (the client would get a broken call), a refusal is not
    an answer to complete, ``n`` > 1 would have to stitch several answers at once, and a
    ``json_schema`` answer is produced by some kinds as a forced tool call, which ignores
    a prefill and would start the JSON again.
    """
    if request.n != 1:
        return "n > 1"
    if tool_calls:
        return "tool call"
    if refusal:
        return "refusal"
    if request.response_format is not None and request.response_format.type == "json_schema":
        return "json_schema answer"
    return None


@dataclass(frozen=True)
class Continuation:
    """What to send to the next provider, and how it was built."""

    request: ChatRequest
    #: The text so far went as an assistant prefill (else: prefill and instruction turns).
    prefill: bool
    #: Whitespace cut off the prefill's end; it was sent to the client already.
    trimmed: str = ""


def build(request: ChatRequest, sent: str, *, prefill: bool, instruction: str) -> Continuation:
    """The request that asks for the rest of the answer whose first part is ``sent``.

    ``prefill``: the target takes a final assistant turn as the start of its answer.
    Otherwise the text so far goes as an assistant turn followed by ``instruction`` as a
    user turn. A token limit is lowered by what the text so far used. Text that is only
    whitespace is no start at all: the original request is
    sent again (the seam then drops nothing, there is nothing to repeat).
    """
    text = sent.rstrip()
    if not text:
        return Continuation(request, prefill=False, trimmed=sent)
    turns: tuple[Message, ...] = (Message("assistant", text),)
    if not prefill:
        turns += (Message("user", instruction),)
    continued = dataclasses.replace(remaining_limit(request, sent),
                                    messages=request.messages + turns)
    return Continuation(continued, prefill=prefill, trimmed=sent[len(text):])


def _splits_word(text: str, at: int) -> bool:
    """Would cutting ``text`` before index ``at`` split a word in two?"""
    return 0 < at < len(text) and text[at - 1].isalnum() and text[at].isalnum()


class Seam:
    """Drops a continuation's repeat of the text already sent, then passes text through.

    Feed the continuation's text as it arrives; :meth:`feed` returns what may go out now
    (possibly nothing while an overlap is still possible), :meth:`close` what is left once
    the continuation ends. An overlap is the longest ``k`` ≤ ``limit`` for which the
    continuation starts with the last ``k`` characters sent, provided they start at a word
    boundary of the sent text (so "a" sent and "and" continued is not an overlap of one).
    """

    def __init__(self, sent: str, limit: int = MAX_OVERLAP) -> None:
        # One character more than the limit, to see whether an overlap starts a word.
        self._sent = sent[-(limit + 1):]
        self._limit = min(limit, len(sent))
        self._held = ""
        self.dropped = ""
        self.decided = False

    def _overlaps(self) -> list[int]:
        """Lengths ``k`` whose sent tail could still be how the continuation starts."""
        sent, held, found = self._sent, self._held, []
        for k in range(1, self._limit + 1):
            tail = sent[len(sent) - k:]
            if _splits_word(sent, len(sent) - k):
                continue
            if (held.startswith(tail) if len(held) >= k else tail.startswith(held)):
                found.append(k)
        return found

    def feed(self, text: str) -> str:
        """The part of ``text`` (after any held back before it) that may go out now."""
        if self.decided:
            return text
        self._held += text
        if any(k > len(self._held) for k in self._overlaps()):
            return ""  # the continuation may still turn out to repeat more: wait
        return self._cut()

    def close(self) -> str:
        """What was held back, once the continuation has ended (or must be sent now)."""
        return "" if self.decided else self._cut()

    def _cut(self) -> str:
        held = self._held
        k = max((k for k in self._overlaps() if k <= len(held)), default=0)
        self.decided, self._held, self.dropped = True, "", held[:k]
        return held[k:]
