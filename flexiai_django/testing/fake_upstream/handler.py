"""What the fake upstream does with one request: route it, then answer, break or stall.

Control paths go to ``control``; API paths are recorded in the shared state, which also
picks the request's fault, and the fault is acted on here, in a fixed order: delay, reset,
auth check, context-length refusal, error status, then the reply (whole or streamed,
possibly malformed, truncated, cut off or slowed). The API's shapes come from its
``formats`` module and the byte-level moves from ``transport``.
"""

from __future__ import annotations

import email.utils
import json
import time
from typing import Any
from urllib.parse import urlsplit

from flexiai_django.testing.fake_upstream import control, formats
from flexiai_django.testing.fake_upstream.faults import Fault
from flexiai_django.testing.fake_upstream.formats import ApiFormat, Reply
from flexiai_django.testing.fake_upstream.formats.base import last_message, prompt_tokens
from flexiai_django.testing.fake_upstream.state import Headers, RecordedRequest, norm_scope
from flexiai_django.testing.fake_upstream.transport import Connection


class Handler(Connection):
    """Serves the control API and the OpenAI, Anthropic and Ollama chat endpoints."""

    def _dispatch(self) -> None:
        """Every method goes through here: control paths, API paths or a 404."""
        body = self._read_body()
        if body is None:
            self.close_connection = True
            self._send_json(400, control.error("unreadable request body"))
            return
        parts = urlsplit(self.path)
        endpoint = control.CONTROLS.get(parts.path)
        if endpoint is not None:
            method, action = endpoint
            if self.command != method:
                self._send_json(405, control.error("method not allowed"), {"Allow": method})
            else:
                status, document = action(self.state, body)
                self._send_json(status, document)
            return
        route = formats.for_path(parts.path)
        if route is None:
            message = f"no route for {self.command} {parts.path}"
            self._send_json(404, control.error(message, "not_found_error"))
            return
        scope, fmt = route
        if self.command != "POST":
            document = fmt.error_document(405, f"{self.command} not allowed; use POST")
            self._send_json(405, document, {"Allow": "POST"})
            return
        self._serve_api(norm_scope(scope), fmt, parts.path, parts.query, body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def _serve_api(
        self, scope: str, fmt: ApiFormat, path: str, query: str, body: bytes
    ) -> None:
        payload: Any
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        headers = Headers(self.headers.items())
        record = RecordedRequest(
            path, headers, payload, self.command, scope, fmt.name, query, body
        )
        fault, prefix, number = self.state.arrive(scope, record)
        fault = fault or Fault()

        if fault.delay and not self._pause(fault.delay):
            self.close_connection = True
            return
        if fault.reset:
            self._abort()
            return
        if fault.auth_key is not None and not fmt.authorized(headers, fault.auth_key):
            self._send_json(401, fmt.error_document(401, "invalid or missing api key"))
            return
        if fault.too_long or (fault.context_window is not None and isinstance(payload, dict)
                               and prompt_tokens(payload) > fault.context_window):
            self._send_json(400, fmt.too_long_document())
            return
        if fault.prefill_refused and last_message(payload).get("role") == "assistant":
            message = "This model does not support assistant message prefill."
            self._send_json(400, fmt.error_document(400, message))
            return
        if fault.status is not None:
            extra = {}
            if fault.retry_after is not None and fault.retry_after_date:
                when = time.time() + fault.retry_after
                extra["Retry-After"] = email.utils.formatdate(when, usegmt=True)
            elif fault.retry_after is not None:
                extra["Retry-After"] = f"{fault.retry_after:g}"
            message = f"fake upstream error {fault.status}"
            self._send_json(fault.status, fmt.error_document(fault.status, message), extra)
            return
        if not isinstance(payload, dict):
            message = "request body must be a JSON object"
            self._send_json(400, fmt.error_document(400, message))
            return

        reply = fmt.reply(payload, prefix, number)
        if fault.refusal:
            reply = reply.refused()
        if fmt.wants_stream(payload):
            self._stream(fmt, reply, fault)
        else:
            self._reply_whole(fmt, reply, fault)

    def _reply_whole(self, fmt: ApiFormat, reply: Reply, fault: Fault) -> None:
        if fault.first_token_delay and not self._pause(fault.first_token_delay):
            self.close_connection = True
            return
        body = json.dumps(fmt.document(reply)).encode()
        if fault.malformed:
            body = fmt.malformed_body
        if not fault.truncated:
            self._send_raw(200, body)
            return
        self._start_response(200, "application/json", {"Content-Length": str(len(body))})
        self.wfile.write(body[: len(body) // 2])
        self._hang_up()

    def _stream(self, fmt: ApiFormat, reply: Reply, fault: Fault) -> None:
        headers = {"Cache-Control": "no-cache", "Transfer-Encoding": "chunked"}
        self._start_response(200, fmt.stream_content_type, headers)
        if fault.malformed:
            self._write_chunks(fmt.malformed_frames)
            self._end_chunks()
            return
        preamble, pieces, epilogue = fmt.frames(reply)
        self._write_chunks(preamble)
        frames: list[bytes | None] = [*pieces, None]
        for sent, piece in enumerate(frames):
            if fault.stream_fail_after is not None and sent >= fault.stream_fail_after:
                self._abort()
                return
            pause = fault.first_token_delay if sent == 0 else 0.0
            if fault.stall_after is not None and sent == fault.stall_after:
                pause = fault.stall_for
            if pause and not self._pause(pause):
                self.close_connection = True
                return
            if fault.malformed_chunk_at == sent and piece is not None:
                self._write_chunks(fmt.malformed_frames[:1])
            if fault.truncated and (sent >= 1 or piece is None):
                self._hang_up()
                return
            if sent and fault.chunk_delay and not self._pause(fault.chunk_delay):
                self.close_connection = True
                return
            if piece is not None:
                self._write_chunks([piece])
        self._write_chunks(list(epilogue)[:-1] if fault.no_end_marker else epilogue)
        self._end_chunks()
