"""Child side of the multi-process broadcast test: a worker process's listener, no server.

Run as ``python -m tests._listener_child BREAKER`` with the suite's settings and
environment. Prints ``ready <version>`` once its listener is in the group and has read
BREAKER, then ``applied <version> <state>`` on every change of its snapshot, and
``count <events applied by broadcast>`` for each ``count`` line on stdin; exits when
stdin closes.
"""

import os
import sys
import threading
import time

import django

_out = threading.Lock()


def say(line: str) -> None:
    with _out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def main(name: str) -> None:
    django.setup()
    from flexiai_django import broadcast
    from flexiai_django.breakers import get_store

    store = get_store()
    listener = broadcast.listener()
    assert listener is not None and listener.ready.wait(30) and listener.connected
    deadline = time.monotonic() + 30
    while (snap := store.snapshot(name, max_age=float("inf"))) is None:
        assert time.monotonic() < deadline, "the listener never read the breaker"
        time.sleep(0.01)  # the listener's first re-read, after it joined

    def answer() -> None:
        for _ in sys.stdin:
            say(f"count {listener.events_applied}")
        os._exit(0)

    threading.Thread(target=answer, daemon=True).start()
    say(f"ready {snap.version}")
    last = snap.version
    while True:
        snap = store.snapshot(name, max_age=float("inf"))
        if snap is not None and snap.version != last:
            last = snap.version
            say(f"applied {last} {snap.state.value}")
        time.sleep(0.002)


if __name__ == "__main__":
    main(sys.argv[1])
