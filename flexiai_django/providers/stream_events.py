"""One stream's lines into deltas, with its end decided: complete, truncated or malformed.

A single garbled event in an otherwise good stream (a proxy mangling one frame) is
skipped and counted (``flexiai_malformed_chunks_total``) rather than failing a stream
that goes on to finish. A stream is still broken (:class:`MalformedReply`) when:

* more than :data:`MAX_MALFORMED` of its events are garbled;
* it ends right after a garbled event (keep-alives aside) without having given its
  finish reason: what was lost may be the rest of the answer;
* the upstream reports an error in it (:class:`ErrorEvent`): that is never skipped.

A whole-garbled stream therefore still fails before its first token, so the chain fails
over. No I/O here: the adapter machinery feeds lines and asks for the end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import orjson

from flexiai_django import metrics
from flexiai_django.chat_types import StreamDelta
from flexiai_django.errors import MalformedReply, UpstreamConnectionError

from .sse import ErrorEvent, LineDecoder

logger = logging.getLogger("flexiai_django")

#: Garbled events one stream may have before it counts as broken.
MAX_MALFORMED = 3
#: What a parser raises for an event it cannot read (see ``ProviderAdapter.parse_event``).
GARBLED = (orjson.JSONDecodeError, KeyError, TypeError, IndexError, ValueError,
           AttributeError)

Parser = Callable[[str | None, str], StreamDelta | None]


class StreamEvents:
    """Feed lines with :meth:`feed`; :attr:`final` is set once the end marker came."""

    def __init__(self, provider: str, fmt: str, parser: Parser) -> None:
        self.provider = provider
        self.decoder = LineDecoder(fmt)
        self.parser = parser
        self.final: StreamDelta | None = None
        #: A finish reason came (a stream may then close without its end marker).
        self.finished = False
        self.malformed = 0
        #: The last event was garbled and no delta has come since.
        self.pending = False

    def feed(self, line: str) -> Iterator[StreamDelta]:
        """The deltas in ``line`` (never the end marker: see :attr:`final`)."""
        for event, data in self.decoder.feed(line):
            if self.final is not None:
                return
            try:
                delta = self.parser(event, data)
            except ErrorEvent:
                raise self._malformed("error event in stream") from None
            except GARBLED as exc:
                self._skip(exc)
                continue
            if delta is None:
                continue
            self.finished = self.finished or delta.finish_reason is not None
            if delta.final:
                self.final = delta
                return
            self.pending = False
            yield delta

    def _skip(self, exc: Exception) -> None:
        self.malformed += 1
        self.pending = True
        metrics.malformed_chunk(self.provider)
        if self.malformed > MAX_MALFORMED:
            raise self._malformed(f"{self.malformed} malformed stream events") from None
        logger.warning("provider %s sent a malformed stream event (%s): skipped",
                       self.provider, type(exc).__name__,
                       extra={"provider": self.provider, "error": "malformed_chunk"})

    def end(self) -> StreamDelta:
        """The stream's last delta, once it has closed or given its end marker.

        A stream that closed cleanly after its finish reason but without the end marker
        (some servers omit ``[DONE]``) is complete; one that stopped before any finish
        reason is truncated; one whose last event was garbled is malformed.
        """
        if self.pending and not self.finished:
            raise self._malformed("stream ended on a malformed event")
        if self.final is not None:
            return self.final
        if self.finished:
            return StreamDelta(final=True)
        raise UpstreamConnectionError("stream ended before its end marker",
                                      provider=self.provider, replied=True)

    def _malformed(self, why: str) -> MalformedReply:
        return MalformedReply(f"malformed stream ({why})", provider=self.provider)
