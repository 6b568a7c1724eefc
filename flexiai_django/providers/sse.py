"""Turn streamed lines into (event, data) pairs: Server-Sent Events or NDJSON."""

from __future__ import annotations

from collections.abc import Iterator


class ErrorEvent(ValueError):
    """An event in which the upstream reports an error (OpenAI's ``{"error": …}``,
    Anthropic's ``error`` event): the stream is over. Unlike a garbled event, which the
    machinery may skip, it is never skipped."""


class LineDecoder:
    """Feed it lines (without newlines); it yields each complete event once."""

    def __init__(self, fmt: str = "sse") -> None:
        if fmt not in ("sse", "ndjson"):
            raise ValueError(f"unknown stream format {fmt!r}")
        self._ndjson = fmt == "ndjson"
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, line: str) -> Iterator[tuple[str | None, str]]:
        line = line.rstrip("\r")
        if self._ndjson:
            if line.strip():
                yield None, line
            return
        if not line:
            if self._data:
                yield self._event, "\n".join(self._data)
            self._event, self._data = None, []
            return
        if line.startswith(":"):
            return
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
