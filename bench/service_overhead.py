"""The service layer's cost over a direct httpx call to the same (fake) upstream.

Sequential calls, one at a time, against a :class:`FakeUpstream` on loopback in this
process (its handler threads share the GIL with the caller, for both sides alike):

* (a) ``httpx.Client.post(<chat completions url>, json=...)`` + ``.json()`` on one
  long-lived client, vs (b) ``flexiai_django.chat("hello")`` with one
  ``openai_compatible`` provider pointing at the same upstream scope;
* (c) the same with ``httpx.AsyncClient`` vs (d) ``await flexiai_django.achat("hello")``;
* streaming: time to the first text piece (and to the end) of ``flexiai_django.stream`` /
  ``astream`` vs parsing the SSE lines of a direct httpx stream.

Each pair runs interleaved in rounds, alternating which side goes first, so drift (CPU
frequency, the upstream's recording deque, GC) lands on both. "new TCP conns" counts the
connections the upstream accepted during a variant's measured calls (0: keep-alive
reuse throughout). Default settings: the
provider list is re-read from the DB at most once a second (``PROVIDER_REFRESH_SECONDS``)
and every answer is written to the cache tier, as in production.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import _setup

ROUNDS = 5
PROMPT = "hello"
PROVIDER = "bench"

Samples = dict[str, list[float]]


def _ms(start_ns: int) -> float:
    return (time.perf_counter_ns() - start_ns) / 1e6


def _rounds(n: int) -> list[int]:
    """N split into ROUNDS near-equal parts."""
    base, extra = divmod(n, ROUNDS)
    return [base + (1 if i < extra else 0) for i in range(ROUNDS)]


def _payload(stream: bool) -> dict[str, Any]:
    """What the openai_compatible adapter sends for ``chat("hello")``."""
    return {
        "model": f"{PROVIDER}-model",
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": stream,
    }


_DONE = object()


def _sse_piece(line: str) -> object:
    """The content of one OpenAI SSE line: a str, ``_DONE`` at [DONE], else None."""
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if data == "[DONE]":
        return _DONE
    choices = json.loads(data)["choices"]
    if choices and (content := choices[0]["delta"].get("content")):
        return str(content)
    return None


def _first_sse_piece(lines: Iterator[str]) -> str | None:
    """The first non-empty content delta of an OpenAI SSE stream (None at [DONE])."""
    for line in lines:
        if (piece := _sse_piece(line)) is not None:
            return piece if isinstance(piece, str) else None
    return None


async def _afirst_sse_piece(lines: AsyncIterator[str]) -> str | None:
    async for line in lines:
        if (piece := _sse_piece(line)) is not None:
            return piece if isinstance(piece, str) else None
    return None


def chat_url(upstream: Any) -> str:
    return upstream.base_url(PROVIDER, api="openai") + "/chat/completions"


def _count_connections(samples: Samples, key: str, opened: int) -> None:
    """Accumulate the TCP connections the upstream accepted while ``key`` ran."""
    samples.setdefault(f"{key}_conns", [0.0])[0] += opened


# --- sync -----------------------------------------------------------------------------------


def run_sync(upstream: Any, n: int, warmup: int, stream_n: int) -> Samples:
    import httpx

    import flexiai_django

    samples: Samples = {k: [] for k in ("a", "b", "sa_first", "sa_total", "sb_first",
                                        "sb_total")}
    url = chat_url(upstream)
    client = httpx.Client()
    body, stream_body = _payload(False), _payload(True)

    def direct(out: list[float]) -> None:
        start = time.perf_counter_ns()
        reply = client.post(url, json=body).json()
        out.append(_ms(start))
        assert reply["choices"][0]["message"]["content"] == f"echo: {PROMPT}"

    def service(out: list[float]) -> None:
        start = time.perf_counter_ns()
        result = flexiai_django.chat(PROMPT)
        out.append(_ms(start))
        assert result.tier == "provider" and result.provider == PROVIDER, result

    def direct_stream(first: list[float], total: list[float]) -> None:
        start = time.perf_counter_ns()
        with client.stream("POST", url, json=stream_body) as response:
            lines = response.iter_lines()
            piece = _first_sse_piece(lines)
            first.append(_ms(start))
            for _ in lines:
                pass
        total.append(_ms(start))
        assert piece

    def service_stream(first: list[float], total: list[float]) -> None:
        start = time.perf_counter_ns()
        pieces = iter(flexiai_django.stream(PROMPT))
        piece = next(pieces)
        first.append(_ms(start))
        for _ in pieces:
            pass
        total.append(_ms(start))
        assert piece

    try:
        trash: list[float] = []
        for _ in range(warmup):
            direct(trash)
            service(trash)

        for i, count in enumerate(_rounds(n)):
            pair: list[Callable[[list[float]], None]] = [direct, service]
            keys = ["a", "b"]
            if i % 2:
                pair.reverse()
                keys.reverse()
            for call, key in zip(pair, keys, strict=True):
                opened = upstream.connections
                for _ in range(count):
                    call(samples[key])
                _count_connections(samples, key, upstream.connections - opened)

        # Stream warm-up here, not earlier: a stream that drops its connection would
        # otherwise make the first measured chat() open a new one.
        for _ in range(max(1, warmup // 10)):
            direct_stream(trash, trash)
            service_stream(trash, trash)
        for i, count in enumerate(_rounds(stream_n)):
            streams = [(direct_stream, "sa"), (service_stream, "sb")]
            if i % 2:
                streams.reverse()
            for scall, key in streams:
                opened = upstream.connections
                for _ in range(count):
                    scall(samples[f"{key}_first"], samples[f"{key}_total"])
                _count_connections(samples, key, upstream.connections - opened)
    finally:
        client.close()
    return samples


# --- async ----------------------------------------------------------------------------------


async def run_async(upstream: Any, n: int, warmup: int, stream_n: int) -> Samples:
    import httpx

    import flexiai_django

    samples: Samples = {k: [] for k in ("c", "d", "sc_first", "sc_total", "sd_first",
                                        "sd_total")}
    url = chat_url(upstream)
    client = httpx.AsyncClient()
    body, stream_body = _payload(False), _payload(True)

    async def direct(out: list[float]) -> None:
        start = time.perf_counter_ns()
        response = await client.post(url, json=body)
        reply = response.json()
        out.append(_ms(start))
        assert reply["choices"][0]["message"]["content"] == f"echo: {PROMPT}"

    async def service(out: list[float]) -> None:
        start = time.perf_counter_ns()
        result = await flexiai_django.achat(PROMPT)
        out.append(_ms(start))
        assert result.tier == "provider" and result.provider == PROVIDER, result

    async def direct_stream(first: list[float], total: list[float]) -> None:
        start = time.perf_counter_ns()
        async with client.stream("POST", url, json=stream_body) as response:
            lines = response.aiter_lines()
            piece = await _afirst_sse_piece(lines)
            first.append(_ms(start))
            async for _ in lines:
                pass
        total.append(_ms(start))
        assert piece

    async def service_stream(first: list[float], total: list[float]) -> None:
        start = time.perf_counter_ns()
        pieces = (await flexiai_django.astream(PROMPT)).__aiter__()
        piece = await pieces.__anext__()
        first.append(_ms(start))
        async for _ in pieces:
            pass
        total.append(_ms(start))
        assert piece

    try:
        trash: list[float] = []
        for _ in range(warmup):
            await direct(trash)
            await service(trash)

        for i, count in enumerate(_rounds(n)):
            pair: list[Callable[[list[float]], Awaitable[None]]] = [direct, service]
            keys = ["c", "d"]
            if i % 2:
                pair.reverse()
                keys.reverse()
            for call, key in zip(pair, keys, strict=True):
                opened = upstream.connections
                for _ in range(count):
                    await call(samples[key])
                _count_connections(samples, key, upstream.connections - opened)

        # Stream warm-up here, not earlier: a stream that drops its connection would
        # otherwise make the first measured chat() open a new one.
        for _ in range(max(1, warmup // 10)):
            await direct_stream(trash, trash)
            await service_stream(trash, trash)
        for i, count in enumerate(_rounds(stream_n)):
            streams = [(direct_stream, "sc"), (service_stream, "sd")]
            if i % 2:
                streams.reverse()
            for scall, key in streams:
                opened = upstream.connections
                for _ in range(count):
                    await scall(samples[f"{key}_first"], samples[f"{key}_total"])
                _count_connections(samples, key, upstream.connections - opened)
    finally:
        await client.aclose()
    return samples


# --- the answer-cache write every successful call makes ------------------------------------


def _cache_tier_args() -> tuple[Any, str, Any]:
    from flexiai_django.chat_types import ChatRequest, Completion

    return ChatRequest.build(PROMPT), PROVIDER, Completion(f"echo: {PROMPT}", f"{PROVIDER}-model")


def run_cache_tier(n: int) -> Samples:
    """µs a request spends on the cache write: ``remember`` (sync) and ``remember_soon`` (async,
    which hands the write to a worker thread and returns)."""
    from flexiai_django import cache_tier

    args = _cache_tier_args()
    sync: list[float] = []
    for _ in range(n):
        start = time.perf_counter_ns()
        cache_tier.remember(*args)
        sync.append((time.perf_counter_ns() - start) / 1000)

    async def run() -> list[float]:
        out: list[float] = []
        for _ in range(n):
            start = time.perf_counter_ns()
            cache_tier.remember_soon(*args)
            out.append((time.perf_counter_ns() - start) / 1000)
            await cache_tier.drain()
        return out

    return {"remember": sync, "remember_soon": asyncio.run(run())}


# --- report ---------------------------------------------------------------------------------


def _row(label: str, values: list[float], connections: list[float]) -> list[str]:
    s = _setup.stats(values)
    return [label, _setup.fmt(s["p50"]), _setup.fmt(s["p99"]), _setup.fmt(s["mean"]),
            str(len(values)), str(int(connections[0]))]


def _compare(label: str, base: list[float], lib: list[float]) -> list[str]:
    b, s = _setup.stats(base), _setup.stats(lib)
    return [
        label,
        f"{s['p50'] / b['p50']:.2f}x",
        f"{s['mean'] / b['mean']:.2f}x",
        f"{s['p50'] - b['p50']:+.3f}",
        f"{s['mean'] - b['mean']:+.3f}",
    ]


def report(sync: Samples, asyn: Samples, tier: Samples) -> None:
    head = ["call", "p50 ms", "p99 ms", "mean ms", "calls", "new TCP conns"]
    _setup.print_table("request/response, sequential", head, [
        _row("(a) direct httpx.Client.post + .json()", sync["a"], sync["a_conns"]),
        _row('(b) flexiai_django.chat("hello")', sync["b"], sync["b_conns"]),
        _row("(c) direct httpx.AsyncClient.post + .json()", asyn["c"], asyn["c_conns"]),
        _row('(d) await flexiai_django.achat("hello")', asyn["d"], asyn["d_conns"]),
    ])
    _setup.print_table("streaming: time to first piece", head, [
        _row("direct httpx.Client.stream", sync["sa_first"], sync["sa_conns"]),
        _row('flexiai_django.stream("hello")', sync["sb_first"], sync["sb_conns"]),
        _row("direct httpx.AsyncClient.stream", asyn["sc_first"], asyn["sc_conns"]),
        _row('await flexiai_django.astream("hello")', asyn["sd_first"], asyn["sd_conns"]),
    ])
    _setup.print_table("streaming: time to end of stream", head, [
        _row("direct httpx.Client.stream", sync["sa_total"], sync["sa_conns"]),
        _row('flexiai_django.stream("hello")', sync["sb_total"], sync["sb_conns"]),
        _row("direct httpx.AsyncClient.stream", asyn["sc_total"], asyn["sc_conns"]),
        _row('await flexiai_django.astream("hello")', asyn["sd_total"], asyn["sd_conns"]),
    ])
    _setup.print_table(
        "answer-cache write on every success (µs)",
        ["call", "p50 µs", "p99 µs", "mean µs", "calls"],
        [
            [label, *(_setup.fmt(v, 1) for v in _setup.stats(values).values()),
             str(len(values))]
            for label, values in (
                ("cache_tier.remember (sync chat/stream)", tier["remember"]),
                ("cache_tier.remember_soon (achat/astream)", tier["remember_soon"]),
            )
        ],
    )
    _setup.print_table(
        "overhead of the service layer",
        ["comparison", "ratio p50", "ratio mean", "added p50 ms", "added mean ms"],
        [
            _compare("sync  b/a  chat vs httpx", sync["a"], sync["b"]),
            _compare("async d/c  achat vs httpx", asyn["c"], asyn["d"]),
            _compare("sync  stream, first piece", sync["sa_first"], sync["sb_first"]),
            _compare("async astream, first piece", asyn["sc_first"], asyn["sd_first"]),
        ],
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="measured calls per variant")
    parser.add_argument("--warmup", type=int, default=200, help="warm-up calls per variant")
    parser.add_argument("--stream-n", type=int, default=300, help="measured streams per variant")
    parser.add_argument("--quick", action="store_true", help="N, warm-up and streams / 10")
    parser.add_argument("--redis", action="store_true",
                        help="cache tier on Redis (REDIS_URL, or a throwaway redis-server)")
    args = parser.parse_args(argv)
    scale = 10 if args.quick else 1
    n = max(ROUNDS, args.n // scale)
    warmup = max(1, args.warmup // scale)
    stream_n = max(ROUNDS, args.stream_n // scale)

    upstream = _setup.setup(redis=args.redis)
    _setup.make_provider(upstream, PROVIDER, kind="openai_compatible")

    from flexiai_django.breakers import get_store
    from flexiai_django.conf import get_settings

    _setup.print_header(
        "service layer overhead vs direct httpx",
        n=n, warmup=warmup, stream_n=stream_n, rounds=ROUNDS,
        cache=_setup.cache_backend(), breaker_store=type(get_store()).__name__,
        provider_refresh_s=get_settings().PROVIDER_REFRESH_SECONDS,
    )
    started = time.monotonic()
    sync = run_sync(upstream, n, warmup, stream_n)
    asyn = asyncio.run(run_async(upstream, n, warmup, stream_n))
    tier = run_cache_tier(n)
    report(sync, asyn, tier)
    print(f"\n(upstream requests served: {upstream.hits(PROVIDER)}; "
          f"measured in {time.monotonic() - started:.1f}s)")


if __name__ == "__main__":
    main()
