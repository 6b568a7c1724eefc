"""stdlib ``json`` vs ``orjson`` on the two documents every provider call handles.

(a) dumping a typical chat request (10 messages of ~200 characters, to bytes, as it
goes on the wire) and (b) loading a typical chat completion reply of ~1 KB (from bytes,
as it comes off the wire). The stdlib is timed the way httpx's ``json=`` encodes
(``ensure_ascii=False``, compact separators, then ``.encode()``) and with its defaults.
Best of 5 repeats of N operations, µs per op. No Django needed.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import _setup
import orjson

REPEATS = 5

_SENTENCE = (
    "the quick brown fox jumps over a lazy dog while the support ticket about invoices, "
    "refunds and a café order from München waits in the queue for a summary of its history"
)
_WORDS = _SENTENCE.split()


def _text(seed: int, length: int = 200) -> str:
    words, i = [], seed
    while sum(len(w) + 1 for w in words) < length:
        words.append(_WORDS[i % len(_WORDS)])
        i += 7
    return " ".join(words)[:length]


def chat_request() -> dict[str, Any]:
    """An OpenAI chat request: a system prompt and 9 turns, ~200 characters each."""
    messages = [{"role": "system", "content": _text(0)}]
    messages += [
        {"role": "user" if i % 2 else "assistant", "content": _text(i)} for i in range(1, 10)
    ]
    return {
        "model": "gpt-4o-mini",
        "messages": messages,
        "stream": False,
        "temperature": 0.2,
        "max_tokens": 512,
    }


def chat_reply() -> bytes:
    """An OpenAI chat completion of about 1 KB, as bytes."""
    document = {
        "id": "chatcmpl-9x8y7z6w5v4u3t2s1r0q",
        "object": "chat.completion",
        "created": 1_763_890_000,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_0123456789",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": " ".join(_text(i) for i in range(3)),
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 431, "completion_tokens": 128, "total_tokens": 559},
    }
    return orjson.dumps(document)


def best_us(op: Callable[[], Any], n: int) -> float:
    best = None
    for _ in range(REPEATS):
        start = time.perf_counter_ns()
        for _ in range(n):
            op()
        elapsed = time.perf_counter_ns() - start
        best = elapsed if best is None else min(best, elapsed)
    assert best is not None
    return best / n / 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000, help="operations per measurement")
    parser.add_argument("--quick", action="store_true", help="N / 10")
    args = parser.parse_args(argv)
    n = max(1, args.n // 10 if args.quick else args.n)

    request, reply = chat_request(), chat_reply()
    request_bytes = orjson.dumps(request)
    # Same document either way.
    assert json.loads(request_bytes) == orjson.loads(request_bytes) == request
    assert json.loads(reply) == orjson.loads(reply)

    _setup.print_header(
        "json vs orjson", n=n, repeats=REPEATS, stat="best of repeats",
        orjson=orjson.__version__,
        request_bytes=len(request_bytes), reply_bytes=len(reply),
    )

    def stdlib_dump_httpx() -> bytes:
        return json.dumps(
            request, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        ).encode()

    def stdlib_dump_default() -> bytes:
        return json.dumps(request).encode()

    def orjson_dump() -> bytes:
        return orjson.dumps(request)

    def stdlib_load() -> Any:
        return json.loads(reply)

    def orjson_load() -> Any:
        return orjson.loads(reply)

    dump_std = best_us(stdlib_dump_httpx, n)
    dump_default = best_us(stdlib_dump_default, n)
    dump_or = best_us(orjson_dump, n)
    load_std = best_us(stdlib_load, n)
    load_or = best_us(orjson_load, n)

    fmt = _setup.fmt
    _setup.print_table(
        "µs per operation",
        ["operation", "json µs", "orjson µs", "json/orjson"],
        [
            (f"(a) dump request ({len(request_bytes)} B), httpx-style",
             fmt(dump_std), fmt(dump_or), f"{dump_std / dump_or:.1f}x"),
            ("(a) dump request, json.dumps defaults",
             fmt(dump_default), fmt(dump_or), f"{dump_default / dump_or:.1f}x"),
            (f"(b) load reply ({len(reply)} B)",
             fmt(load_std), fmt(load_or), f"{load_std / load_or:.1f}x"),
        ],
    )


if __name__ == "__main__":
    main()
