"""A raw asyncio upstream for ``bench/gateway.py``: OpenAI's chat API at almost no cost.

The test suite's ``FakeUpstream`` (threaded ``http.server``, fault injection, recording)
spends about as much CPU per call as the gateway itself, and on a 2-core machine that
CPU is taken from the gateway being measured. This server does only what the benchmark
needs: it reads HTTP/1.1 requests on kept-alive connections and answers every
``POST .../chat/completions`` with a canned ``chat.completion``, or with a few SSE
chunks and ``[DONE]`` when the body asks for ``"stream": true``. Any other request gets
a 404. Run as ``python bench/_raw_upstream.py --port N``; uvloop is used when installed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

COMPLETION = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": int(time.time()),
    "model": "bench-model",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "Hello from the raw upstream."}}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11},
}).encode()


def _chunk(delta: dict[str, str], finish: str | None) -> bytes:
    body = json.dumps({"id": "chatcmpl-bench", "object": "chat.completion.chunk",
                       "created": 0, "model": "bench-model",
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    return f"data: {body}\n\n".encode()


STREAM = b"".join([_chunk({"role": "assistant", "content": ""}, None),
                   *(_chunk({"content": word}, None) for word in ("Hello ", "from ", "raw.")),
                   _chunk({}, "stop"), b"data: [DONE]\n\n"])


def _response(status: bytes, content_type: bytes, body: bytes) -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: " + content_type +
            b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


PLAIN = _response(b"200 OK", b"application/json", COMPLETION)
EVENTS = _response(b"200 OK", b"text/event-stream", STREAM)
MISSING = _response(b"404 Not Found", b"application/json", b'{"error":"not found"}')


class Upstream(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15:head.find(b"\r\n", at) if head.find(
                b"\r\n", at) > 0 else None]) if at >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4:end + 4 + length]
            self.buffer = self.buffer[end + 4 + length:]
            line = head[:head.find(b"\r\n")]
            if not line.startswith(b"post ") or b"/chat/completions" not in line:
                self.transport.write(MISSING)
            elif b'"stream":true' in body.replace(b" ", b""):
                self.transport.write(EVENTS)
            else:
                self.transport.write(PLAIN)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(
            Upstream, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    try:
        import uvloop
    except ImportError:
        asyncio.run(serve())
    else:
        uvloop.run(serve())


if __name__ == "__main__":
    main()
