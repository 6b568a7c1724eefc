"""How long a breaker transition takes to reach the last worker that must see it.

One process (this one) forces a breaker with ``get_store().force(...)``, alternately to
FORCED_OPEN and CLOSED; the Redis store writes it with one Lua call and this process's
broadcast listener publishes it on the channel group. Three measurements, each over R
rounds (50; ``--quick``: 10), all against a throwaway ``redis-server``:

1. **HTTP, ``GET /circuit-breakers``** on ``gunicorn -k uvicorn_worker.UvicornWorker -w 4``:
   after ``force()``, poll on fresh connections (``connection: close``; SO_REUSEPORT
   spreads them over the workers) until each of the 4 workers has answered with its
   ``local`` state equal to the target. Latency = from just before ``force()`` to the
   response of the last worker's first matching answer. Polling is sequential, so the
   figure includes the ``force()`` call and however many polls it took to reach all 4
   workers (printed), at the round-trip time printed next to it. (The view re-reads
   Redis, which overwrites the worker's snapshots, before it reports ``local``: it
   shows what Redis holds, never a stale worker.)
2. **HTTP, ``POST /chat/direct``** on the same server: the same loop, but what is checked
   is the worker's *admission decision*: with demo-primary forced open a worker that has
   the news answers from demo-secondary, with it closed from demo-primary. Answers that
   still reflect the old state after ``force()`` returned are counted.
3. **In-process listener, no HTTP**: N plain Python subprocesses (not servers) each
   ``django.setup()``, start ``flexiai_django.broadcast.listener()``, wait until it is
   connected, then check ``get_store().snapshot("llm:bench", max_age=inf)`` every
   ``--spin-ms`` (sleeping in between, which releases the GIL for the listener thread)
   and print ``time.time()`` when the version changes. This process forces the
   transitions and takes per-subprocess deltas (same machine clock). Each subprocess
   also says whether the change came from a broadcast or from the listener's periodic
   re-read (``RESYNC_SECONDS``), and when its listener received and applied the event:
   this process times its own sends too, so the delay is split into parts (bench/README.md).
   ``--listener-only`` runs only this measurement.

Run as ``python bench/propagation.py --child`` it is one of those subprocesses.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import _servers
import _setup
import httpx
import redis

WORKERS = 4
LISTENER_BREAKER = "llm:bench"
TARGETS = ("forced_open", "closed")
ROUND_TIMEOUT = 5.0
RTT_SAMPLES = 100


# --- the subprocess -----------------------------------------------------------------------


def child(spin_ms: float) -> None:
    """Report every version change of LISTENER_BREAKER this process's snapshot sees."""
    # Ctrl-C reaches the whole process group: the parent stops this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import django

    django.setup()
    from flexiai_django import broadcast
    from flexiai_django.breakers import get_store

    store = get_store()
    listener = broadcast.listener()
    if listener is None or not listener.ready.wait(30) or not listener.connected:
        print("error listener not connected", flush=True)
        sys.exit(1)
    deadline = time.monotonic() + 30
    while (snap := store.snapshot(LISTENER_BREAKER, max_age=float("inf"))) is None:
        if time.monotonic() > deadline:
            print("error no initial snapshot", flush=True)
            sys.exit(1)
        time.sleep(0.01)

    def exit_when_parent_goes() -> None:
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=exit_when_parent_goes, daemon=True).start()
    print(f"ready {os.getpid()} {snap.version}", flush=True)

    # When each breaker event reached the listener (before it is applied), by version, and
    # when its publisher stamped it: the parts of the delay.
    # And when the listener had applied it to the snapshot (no polling delay in that one).
    arrivals: dict[int, tuple[float, float, float]] = {}
    handle = listener.handle

    def timed_handle(message: dict[str, Any]) -> None:
        received = time.time()
        handle(message)
        if message.get("type") == broadcast.BREAKER_EVENT:
            arrivals[int(message["state"]["version"])] = (
                received, float(message.get("sent_at", 0)), time.time())

    listener.handle = timed_handle  # type: ignore[method-assign]

    spin = spin_ms / 1000
    last = snap.version
    applied = listener.events_applied
    while True:
        snap = store.snapshot(LISTENER_BREAKER, max_age=float("inf"))
        if snap is not None and snap.version != last:
            seen = time.time()
            # apply_remote() counts the event just after storing it: let it finish.
            time.sleep(0.002)
            via = "broadcast" if listener.events_applied > applied else "resync"
            applied = listener.events_applied
            last = snap.version
            received, sent, applied_at = arrivals.pop(snap.version, (0.0, 0.0, 0.0))
            print(f"seen {snap.version} {snap.state.value} {seen!r} {via} {received!r} "
                  f"{sent!r} {applied_at!r}", flush=True)
        time.sleep(spin)


# --- HTTP rounds --------------------------------------------------------------------------


def _circuit_view(client: httpx.Client, url: str) -> tuple[str, str | None]:
    body = client.get(f"{url}/circuit-breakers", headers=_servers.CLOSE).json()
    local = body["breakers"].get(_servers.BREAKER, {}).get("local")
    return body["worker_id"], local and local["state"]


def _chat_view(client: httpx.Client, url: str) -> tuple[str, str | None]:
    response = client.post(f"{url}/chat/direct", json={"message": "hi"},
                           headers=_servers.CLOSE)
    response.raise_for_status()
    body = response.json()
    provider = body["provider"]
    state = {"demo-primary": "closed", "demo-secondary": "forced_open"}.get(provider)
    return body["worker_id"], state


def http_rounds(
    url: str, rounds: int, view: Any, store: Any
) -> tuple[list[float], list[int], int, list[float]]:
    """(latency ms per round, polls per round, old-state answers, force() ms per round)."""
    from flexiai_django.breakers.state import State

    latencies, polls, forces = [], [], []
    stale = 0
    with httpx.Client(timeout=10) as client:
        for i in range(rounds):
            target = TARGETS[i % 2]
            time.sleep(random.uniform(0.02, 0.08))  # a random phase against RESYNC_SECONDS
            t0 = time.perf_counter()
            store.force(_servers.BREAKER, State(target))
            forced = time.perf_counter()
            first: dict[str, float] = {}
            count = 0
            while len(first) < WORKERS:
                if time.perf_counter() - t0 > ROUND_TIMEOUT:
                    raise RuntimeError(f"round {i}: only {len(first)} workers saw {target}")
                worker, state = view(client, url)
                received = time.perf_counter()
                count += 1
                if state == target:
                    first.setdefault(worker, received)
                elif worker not in first:
                    stale += 1  # asked after force() had returned, answered the old state
            latencies.append((max(first.values()) - t0) * 1000)
            polls.append(count)
            forces.append((forced - t0) * 1000)
    return latencies, polls, stale, forces


# --- listener rounds ----------------------------------------------------------------------


class Child:
    """One ``--child`` subprocess and the reports it has printed."""

    def __init__(self, spin_ms: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(_setup.ROOT / "bench" / "propagation.py"), "--child",
             "--spin-ms", str(spin_ms)],
            cwd=_setup.ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.ready = threading.Event()
        self.error: str | None = None
        # (version, time.time() seen, via, time.time() received, publisher's sent_at,
        # time.time() applied)
        self.seen: list[tuple[int, float, str, float, float, float]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "ready":
                self.ready.set()
            elif parts[0] == "seen":
                with self._lock:
                    self.seen.append((int(parts[1]), float(parts[3]), parts[4],
                                      float(parts[5]), float(parts[6]), float(parts[7])))
            elif parts[0] == "error":
                self.error = line.strip()
                self.ready.set()
        self.ready.set()

    def first_at_least(self, version: int) -> tuple[float, str, float, float, float] | None:
        """(seen at, via, received at, sent at, applied at) of the first version >=
        ``version``; the last three are 0 for a change that came by a re-read."""
        with self._lock:
            for seen_version, at, via, received, sent, applied in self.seen:
                if seen_version >= version:
                    return at, via, received, sent, applied
        return None

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                assert self.process.stdin is not None
                self.process.stdin.close()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def listener_rounds(
    stack: contextlib.ExitStack, n: int, rounds: int, spin_ms: float
) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Figures in ms by name (see ``LISTENER_ROWS``) and deliveries by route."""
    from flexiai_django.breakers import get_store
    from flexiai_django.breakers.state import State

    store = get_store()
    figures: dict[str, list[float]] = {name: [] for name, _ in LISTENER_ROWS}
    sends = _time_sends()
    for i in range(20):  # force() while no other live process listens
        t0 = time.perf_counter()
        store.force(LISTENER_BREAKER, State(TARGETS[i % 2]))
        figures["alone"].append((time.perf_counter() - t0) * 1000)
    store.force(LISTENER_BREAKER, State.CLOSED)  # exists before the children read it
    children = []
    for _ in range(n):
        kid = Child(spin_ms)
        stack.callback(kid.stop)
        children.append(kid)
    for kid in children:
        if not kid.ready.wait(90) or kid.error or kid.process.poll() is not None:
            raise RuntimeError(f"listener subprocess did not start: {kid.error}")

    routes = {"broadcast": 0, "resync": 0}
    for i in range(rounds):
        target = State(TARGETS[i % 2])
        time.sleep(random.uniform(0.05, 0.15))
        t0 = time.time()
        version = store.force(LISTENER_BREAKER, target).version
        t1 = time.time()
        figures["force"].append((t1 - t0) * 1000)
        deadline = time.monotonic() + ROUND_TIMEOUT
        while True:
            got = [kid.first_at_least(version) for kid in children]
            if all(g is not None for g in got):
                break
            if time.monotonic() > deadline:
                missing = sum(g is None for g in got)
                raise RuntimeError(f"round {i}: {missing} subprocesses never saw v{version}")
            time.sleep(0.005)
        seen = [g for g in got if g is not None]
        round_deltas = [(at - t0) * 1000 for at, *_ in seen]
        figures["each"] += round_deltas
        figures["after"] += [(at - t1) * 1000 for at, *_ in seen]
        figures["last"].append(max(round_deltas))
        # The listener's own clock when it had applied the event (a re-read: when seen).
        applied_at = [(applied or at) - t0 for at, _, _, _, applied in seen]
        figures["applied_each"] += [d * 1000 for d in applied_at]
        figures["applied_last"].append(max(applied_at) * 1000)
        for at, via, received, sent, applied in seen:
            routes[via] += 1
            if via == "broadcast" and received and sent:
                figures["stamped"].append((sent - t0) * 1000)
                figures["wire"].append((received - sent) * 1000)
                figures["applied"].append((applied - received) * 1000)
                figures["polled"].append((at - applied) * 1000)
                if sent in sends:
                    started, ended = sends[sent]
                    figures["hop"].append((started - sent) * 1000)
                    figures["send"].append((ended - started) * 1000)
                    figures["delivered"].append((received - started) * 1000)
    return figures, routes


def _time_sends() -> dict[float, tuple[float, float]]:
    """Time this process's broadcast sends on its listener's loop, by the event's sent_at:
    (started, ended), time.time(). Works on the code before the lean sender too."""
    from flexiai_django import broadcast

    listener = broadcast.listener()
    assert listener is not None
    sender = getattr(listener, "sender", None)
    owner, name = (sender, "send") if sender is not None else (listener.layer, "group_send")
    original = getattr(owner, name)
    sends: dict[float, tuple[float, float]] = {}

    async def timed(group: str, message: dict[str, Any], **options: Any) -> None:
        started = time.time()
        try:
            await original(group, message, **options)
        finally:
            sends[float(message.get("sent_at", 0))] = (started, time.time())

    setattr(owner, name, timed)
    return sends


#: Rows of the listener table: key in listener_rounds()'s figures, label.
LISTENER_ROWS = (
    ("applied_each", "each subprocess, applied to its snapshot"),
    ("applied_last", "last subprocess of the round, applied"),
    ("each", "each subprocess, seen by its polling thread"),
    ("after", "  the same, after force() returned"),
    ("last", "last subprocess of the round, seen"),
    ("force", "force() call (Lua + publish)"),
    ("alone", "force() call, no subprocess listening"),
    ("stamped", "part 1: force() start -> event stamped"),
    ("wire", "part 2: stamped -> listener received"),
    ("hop", "  2a: stamped -> send starts (loop)"),
    ("send", "  2b: the send (Redis round trips)"),
    ("delivered", "  2c: send starts -> listener received"),
    ("applied", "part 3: received -> applied to the snapshot"),
    ("polled", "part 4: applied -> seen by the polling thread"),
)


# --- main ---------------------------------------------------------------------------------


def _row(label: str, values: list[float], *extra: str) -> tuple[str, ...]:
    s = _setup.stats(values)
    return (label, _setup.fmt(s["p50"], 2), _setup.fmt(s["p99"], 2),
            _setup.fmt(max(values), 2), str(len(values)), *extra)


def print_http(circuit: Any, chat: Any, circuit_rtt: list[float],
               chat_rtt: list[float]) -> None:
    """Tables (1, 2): the HTTP rounds and what they are made of."""
    circuit_p50 = _setup.percentile(circuit_rtt, 50)
    chat_p50 = _setup.percentile(chat_rtt, 50)
    _setup.print_table(
        f"(1, 2) HTTP: until all {WORKERS} workers answered with the new state (ms, "
        "from just before force())",
        ["probe", "p50", "p99", "max", "rounds", "polls/round (mean)"],
        [
            _row("GET /circuit-breakers, local state", circuit[0],
                 f"{sum(circuit[1]) / len(circuit[1]):.1f}"),
            _row("POST /chat/direct, provider chosen", chat[0],
                 f"{sum(chat[1]) / len(chat[1]):.1f}"),
        ],
    )
    _setup.print_table(
        "what the HTTP figures are made of (ms)",
        ["part", "p50", "p99", "max", "samples"],
        [
            _row("one GET /circuit-breakers (new conn)", circuit_rtt),
            _row("one POST /chat/direct (new conn)", chat_rtt),
            _row("force() call (Lua + publish)", circuit[3] + chat[3]),
        ],
    )
    print(f"answers with the old state after force() returned: "
          f"/circuit-breakers {circuit[2]}, /chat/direct {chat[2]}")
    print(f"=> the HTTP latency includes ~{sum(circuit[1]) / len(circuit[1]):.1f} "
          f"sequential polls of ~{circuit_p50:.1f} ms (/circuit-breakers) and "
          f"~{sum(chat[1]) / len(chat[1]):.1f} of ~{chat_p50:.1f} ms (/chat/direct) "
          "to reach every worker: it is an upper bound, not the broadcast delay.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50, help="transitions per measurement")
    parser.add_argument("--quick", action="store_true", help="rounds and RTT samples / 5")
    parser.add_argument("--subprocesses", type=int, default=WORKERS,
                        help="listener subprocesses in measurement 3")
    parser.add_argument("--spin-ms", type=float, default=0.2,
                        help="how often a listener subprocess looks at its snapshot")
    parser.add_argument("--listener-only", action="store_true",
                        help="measurement 3 only (no gunicorn server, no HTTP rounds)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.spin_ms)
        return
    rounds = max(2, args.rounds // 5 if args.quick else args.rounds)
    rtt_samples = RTT_SAMPLES // 5 if args.quick else RTT_SAMPLES

    _servers.exit_on_signals()
    with contextlib.ExitStack() as stack:
        redis_server = _servers.start_redis(stack)
        # Runs before Redis stops: this process's listener would log losing it.
        stack.callback(logging.getLogger("flexiai_django").setLevel, logging.CRITICAL)
        os.environ["REDIS_URL"] = redis_server.url
        _setup.configure_django(redis=True)
        upstream = _setup.setup(redis=True)
        _servers.seed_demo(upstream.url)
        from django.conf import settings

        from flexiai_django.breakers import get_store
        from flexiai_django.conf import get_settings

        store = get_store()
        _setup.print_header(
            "breaker transition propagation",
            rounds=rounds, server=f"gunicorn -k uvicorn_worker.UvicornWorker -w {WORKERS}",
            listener_subprocesses=args.subprocesses, spin_ms=args.spin_ms,
            store=type(store).__name__,
            channel_layer=settings.CHANNEL_LAYERS["default"]["BACKEND"].rsplit(".", 1)[-1],
            resync_s=get_settings().RESYNC_SECONDS,
        )

        if not args.listener_only:
            with contextlib.ExitStack() as site_stack:
                started = time.monotonic()
                server = _servers.start_server(
                    site_stack, _servers.site_env(redis_server.url), WORKERS)
                print(f"({WORKERS} workers up and listening in {time.monotonic() - started:.1f}s)",
                      flush=True)
                with httpx.Client(timeout=10) as client:
                    # Each worker's first chat builds its provider clients: not a poll cost.
                    _servers.warm_up_chat(client, server.url, WORKERS)
                    circuit_rtt = _servers.timed_requests(
                        lambda: client.get(f"{server.url}/circuit-breakers",
                                           headers=_servers.CLOSE), rtt_samples)
                    chat_rtt = _servers.timed_requests(
                        lambda: client.post(f"{server.url}/chat/direct", json={"message": "hi"},
                                            headers=_servers.CLOSE), rtt_samples)
                circuit = http_rounds(server.url, rounds, _circuit_view, store)
                chat = http_rounds(server.url, rounds, _chat_view, store)
        # The server is stopped: measurement 3 has the machine to itself. Its workers'
        # channels stay in the group until channels-redis's group_expiry.
        group = redis.Redis.from_url(redis_server.url)
        members = group.zcard(f"asgi:group:{get_settings().CHANNEL_GROUP}")
        group.close()
        figures, routes = listener_rounds(stack, args.subprocesses, rounds, args.spin_ms)

        if not args.listener_only:
            print_http(circuit, chat, circuit_rtt, chat_rtt)
        _setup.print_table(
            f"(3) in-process listener, {args.subprocesses} plain subprocesses, no HTTP "
            f"(ms after just before force(); resolution ~{args.spin_ms} ms)",
            ["measure", "p50", "p99", "max", "samples"],
            [_row(label, figures[key]) for key, label in LISTENER_ROWS if figures[key]],
        )
        if not args.listener_only:
            print(f"channel group members once the server had stopped: {members} "
                  f"(this process + {WORKERS} stopped workers')")
        print(f"delivered by: broadcast {routes['broadcast']}, "
              f"periodic re-read {routes['resync']} (of {sum(routes.values())})", flush=True)


if __name__ == "__main__":
    main()
