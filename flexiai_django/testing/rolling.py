"""A rolling restart under load: instances restarted in turn behind a proxy, every answer kept.

:class:`Traffic` sends steady load through a proxy from threads (plain chat completions,
and streams that each last long enough to be in flight across a restart) and records
every outcome, with the worker that answered (``X-FlexiAI-Worker``). :func:`restart`
stops one instance the way an orchestrator does (SIGTERM to its master alone), waits for
it to exit, starts it again on the same port and waits until it is ready.
:func:`rolling_restart` does that to each instance in turn, waiting before the next until
the proxy has sent the restarted one traffic again (otherwise two instances would be out
at once). Used by tests/multiprocess/test_rolling_restart.py and bench/rolling_restart.py.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import httpx

from flexiai_django.testing.servers import ServerProcess

_UNANSWERED = "unanswered: "
#: What a client sees when a proxy closes a kept-alive connection its request went out
#: on: a clean close, or a reset when the request's bytes were still unread in the
#: socket (the kernel answers a close with unread data by RST).
_CLOSED_UNANSWERED = (httpx.RemoteProtocolError, httpx.ReadError)

__all__ = ["Outcome", "Restarted", "Traffic", "restart", "rolling_restart"]


@dataclass(frozen=True)
class Outcome:
    """One request as the client saw it."""

    kind: str  # "plain" or "stream"
    ok: bool
    latency: float  # seconds, to the whole answer (a stream: to its [DONE])
    started: float  # time.monotonic()
    worker: str = ""  # X-FlexiAI-Worker: host:pid
    detail: str = ""  # why it failed
    retried: bool = False  # sent again: the proxy closed a kept-alive connection unanswered


@dataclass
class Traffic:
    """``with Traffic(proxy_url, token, expect=...) as traffic:`` — load until the block ends.

    ``expect`` is the answer's text; ``stream_words`` the prompt of each stream (the fake
    upstream echoes it, one piece a word: with a ``chunk_delay`` a stream lasts about
    words x delay).
    """

    url: str
    token: str
    expect: Callable[[str], str]
    plain_clients: int = 3
    stream_clients: int = 2
    stream_words: int = 8
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    #: thread -> (worker, when its answer began), for the streams being read now
    _streaming: dict[int, tuple[str, float]] = field(default_factory=dict)

    def __enter__(self) -> Traffic:
        self._threads = [threading.Thread(target=self._loop, args=(self._plain,), daemon=True)
                         for _ in range(self.plain_clients)]
        self._threads += [threading.Thread(target=self._loop, args=(self._stream,), daemon=True)
                          for _ in range(self.stream_clients)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]

    @property
    def retried(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.retried]

    def served_by(self, pids: list[int], since: float) -> int:
        """How many answers workers ``pids`` gave to requests started after ``since``."""
        ids = {str(pid) for pid in pids}
        return sum(1 for o in list(self.outcomes)
                   if o.ok and o.started >= since and o.worker.rpartition(":")[2] in ids)

    def streaming_on(self, pids: tuple[int, ...], within: float = 0.25) -> bool:
        """Whether a stream that one of workers ``pids`` began answering less than
        ``within`` seconds ago is in flight now (so it still has most of its way to go)."""
        ids = {str(pid) for pid in pids}
        recent = time.monotonic() - within
        return any(w.rpartition(":")[2] in ids and began >= recent
                   for w, began in list(self._streaming.values()))

    def _loop(self, send: Callable[[httpx.Client], Outcome]) -> None:
        """One client on kept-alive connections. A connection the proxy closed before any
        answer (an nginx reload ends its old workers' kept-alive connections; one may
        close just as a request goes out on it, seen as a close or a reset) is sent again
        once, on a new connection, as the openai SDK does: the proxy never read it."""
        headers = {"authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=30) as client:
            while not self._stop.is_set():
                outcome = send(client)
                if outcome.detail.startswith(_UNANSWERED):
                    outcome = replace(send(client), retried=True)
                self.outcomes.append(outcome)

    def _plain(self, client: httpx.Client) -> Outcome:
        prompt = "rolling restart"
        started = time.monotonic()
        try:
            response = client.post("/v1/chat/completions", json={
                "model": "auto", "messages": [{"role": "user", "content": prompt}]})
        except _CLOSED_UNANSWERED as exc:
            return Outcome("plain", False, time.monotonic() - started, started,
                           detail=f"{_UNANSWERED}{exc!r}")
        except httpx.HTTPError as exc:
            return Outcome("plain", False, time.monotonic() - started, started,
                           detail=repr(exc))
        latency = time.monotonic() - started
        worker = response.headers.get("x-flexiai-worker", "")
        if response.status_code != 200:
            return Outcome("plain", False, latency, started, worker,
                           f"{response.status_code} {response.text[:200]}")
        text = response.json()["choices"][0]["message"]["content"]
        ok = text == self.expect(prompt)
        return Outcome("plain", ok, latency, started, worker, "" if ok else f"text {text!r}")

    def _stream(self, client: httpx.Client) -> Outcome:
        prompt = " ".join(f"word{i}" for i in range(self.stream_words))
        body = {"model": "auto", "stream": True,
                "messages": [{"role": "user", "content": prompt}]}
        started = time.monotonic()
        text, done, worker, status = "", False, "", 0
        try:
            with client.stream("POST", "/v1/chat/completions", json=body) as response:
                status = response.status_code
                worker = response.headers.get("x-flexiai-worker", "")
                self._streaming[threading.get_ident()] = (worker, time.monotonic())
                for line in response.iter_lines():
                    if line == "data: [DONE]":
                        done = True
                    elif line.startswith("data: "):
                        for choice in json.loads(line[6:]).get("choices", []):
                            text += choice["delta"].get("content") or ""
        except httpx.HTTPError as exc:
            self._streaming.pop(threading.get_ident(), None)
            unanswered = _UNANSWERED if (
                status == 0 and isinstance(exc, _CLOSED_UNANSWERED)) else ""
            return Outcome("stream", False, time.monotonic() - started, started, worker,
                           f"{unanswered}{status} after {text!r}: {exc!r}")
        self._streaming.pop(threading.get_ident(), None)
        latency = time.monotonic() - started
        ok = status == 200 and done and text == self.expect(prompt)
        detail = "" if ok else f"{status} done={done} text={text[:200]!r}"
        return Outcome("stream", ok, latency, started, worker, detail)


@dataclass(frozen=True)
class Restarted:
    """How one instance's restart went (seconds after its SIGTERM)."""

    sigterm_at: float  # time.monotonic()
    old_pids: tuple[int, ...]  # the workers it had before
    exited: float
    ready: float
    back_in_rotation: float


def restart(server: ServerProcess, timeout: float = 60.0) -> tuple[float, float]:
    """SIGTERM to the master alone; wait for it to exit; start it again on the same port;
    wait for readiness. Returns (exited, ready) in seconds after the SIGTERM."""
    assert server.process is not None
    sigterm = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    code = server.process.wait(timeout)
    exited = time.monotonic() - sigterm
    if code != 0:
        raise RuntimeError(f"{server.kind} exited {code}:\n{server.output()[-3000:]}")
    server.start(timeout)
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=5, headers={"connection": "close"}) as client:
        while client.get(f"{server.url}/health/ready?providers=0").status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{server.kind} not ready within {timeout}s")
            time.sleep(0.05)
    return exited, time.monotonic() - sigterm


def rolling_restart(servers: list[ServerProcess], traffic: Traffic,
                    between: Callable[[ServerProcess], None] | None = None,
                    take_out: Callable[[ServerProcess, bool], None] | None = None,
                    timeout: float = 60.0) -> list[Restarted]:
    """Restart each server in turn while ``traffic`` runs: SIGTERM once a stream is in
    flight there; before the next, wait until the proxy sent the restarted one requests
    again (``between`` is called then). ``take_out(server, True)`` runs just before the
    SIGTERM and ``take_out(server, False)`` once it is ready again: a proxy without
    health checks is told by its operator (nginx: ``down`` and a reload)."""
    report = []
    for server in servers:
        old_pids = tuple(server.worker_pids())
        deadline = time.monotonic() + timeout
        while not traffic.streaming_on(old_pids) and time.monotonic() < deadline:
            time.sleep(0.01)
        if take_out is not None:
            take_out(server, True)
        sigterm = time.monotonic()
        exited, ready = restart(server, timeout)
        if take_out is not None:
            take_out(server, False)
        pids = server.worker_pids()
        deadline = time.monotonic() + timeout
        while traffic.served_by(pids, sigterm) < 3:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no traffic reached the restarted {server.url} "
                                   f"within {timeout}s")
            time.sleep(0.05)
        report.append(Restarted(sigterm, old_pids, exited, ready, time.monotonic() - sigterm))
        if between is not None:
            between(server)
    return report
