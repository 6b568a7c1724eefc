"""The broadcast listener reads its channel with one blocking pop (``channel_reader``).

Real channel layers on the suite's Redis, each test on a group of its own; real worker
processes (``tests/_listener_child.py``) for delivery between processes; a Redis of
the test's own where it is stopped and started again.
"""

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis
from channels.layers import InMemoryChannelLayer, channel_layers
from django.conf import settings
from django.test import override_settings

from flexiai_django.breakers import get_store
from flexiai_django.breakers.state import State
from flexiai_django.broadcast import PROVIDERS_EVENT, Listener
from flexiai_django.channel_reader import ChannelReader
from flexiai_django.group_sender import GroupSender
from flexiai_django.testing.redis_server import RedisServer
from tests.test_group_sender import joined

ROOT = Path(__file__).resolve().parent.parent
MESSAGE = {"type": "flexiai.breaker", "name": "llm:x", "state": {"version": 1}}


@pytest.mark.asyncio
async def test_the_listener_gets_each_message_once_in_order_and_the_status_page_too(group):
    worker, page_layer = (channel_layers.make_backend("default") for _ in range(2))
    listening, page = await joined(worker, group), await joined(page_layer, group)
    reader = ChannelReader(worker)
    assert reader.lean
    events = [{**MESSAGE, "state": {"version": v}} for v in (1, 2, 3)]

    await GroupSender(channel_layers.make_backend("default")).send(group, events[0])
    await channel_layers.make_backend("default").group_send(group, events[1])  # channels'
    await GroupSender(channel_layers.make_backend("default")).send(group, events[2])

    assert [await asyncio.wait_for(reader.receive(listening), 5) for _ in events] == events
    assert [await asyncio.wait_for(page_layer.receive(page), 5) for _ in events] == events
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    queue = worker.prefix + worker.non_local_name(listening)
    assert client.exists(queue, queue + "$inflight") == 0, "nothing left, no back-up copy"
    client.close()


@pytest.mark.asyncio
async def test_other_layers_use_their_own_receive():
    memory = InMemoryChannelLayer()  # `make run` without Redis
    reader = ChannelReader(memory)
    channel = await memory.new_channel()
    await memory.send(channel, MESSAGE)
    assert not reader.lean
    assert await reader.receive(channel) == MESSAGE


class Worker:
    """A ``tests/_listener_child.py`` process and what it has printed."""

    def __init__(self, breaker: str, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests._listener_child", breaker], cwd=ROOT, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.lines: list[list[str]] = []
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self.changed:
                self.lines.append(line.split())
                self.changed.notify_all()

    def wait_for(self, test, timeout: float = 10):
        """The first printed line ``test`` accepts."""
        with self.changed:
            found = self.changed.wait_for(
                lambda: next((words for words in self.lines if test(words)), None), timeout)
        assert found, f"worker {self.process.pid} printed {self.lines[-3:]}"
        return found

    def applied_by_broadcast(self) -> int:
        assert self.process.stdin is not None
        asked = len(self.lines)
        self.process.stdin.write("count\n")
        self.process.stdin.flush()
        with self.changed:
            self.changed.wait_for(lambda: any(w[0] == "count" for w in self.lines[asked:]), 10)
        return int(next(w[1] for w in self.lines[asked:] if w[0] == "count"))

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.mark.slow
@pytest.mark.django_db
def test_worker_processes_apply_each_transition_from_the_broadcast_and_the_page_sees_it(
        group):
    """Re-reads every hour: whatever the workers apply came by broadcast."""
    breaker = f"llm:{uuid.uuid4().hex[:8]}"
    page_layer = channel_layers.make_backend("default")
    page = asyncio.run(joined(page_layer, group))
    flexiai = {**settings.FLEXIAI, "CHANNEL_GROUP": group}
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
           "FLEXIAI_JSON": json.dumps({"CHANNEL_GROUP": group, "RESYNC_SECONDS": 3600})}
    store = get_store()
    with override_settings(FLEXIAI=flexiai):
        first = store.force(breaker, State.CLOSED)  # in Redis before the workers start
        workers = [Worker(breaker, env) for _ in range(3)]
        try:
            for worker in workers:
                worker.wait_for(lambda words: words[0] == "ready", timeout=60)
            targets = [State.FORCED_OPEN, State.CLOSED, State.FORCED_OPEN, State.CLOSED]
            versions = []
            for target in targets:
                version = store.force(breaker, target).version
                versions.append(version)
                for worker in workers:
                    worker.wait_for(lambda w, v=version: w[:2] == ["applied", str(v)])
            assert [worker.applied_by_broadcast() for worker in workers] == [4, 4, 4]
        finally:
            for worker in workers:
                worker.stop()

    async def page_events():
        seen = []
        while len(seen) < 1 + len(targets):
            message = await asyncio.wait_for(page_layer.receive(page), 5)
            if message["type"] == "flexiai.breaker" and message["name"] == breaker:
                seen.append((message["state"]["version"], message["state"]["state"]))
        return seen

    assert asyncio.run(page_events()) == [(first.version, "closed"), *(
        (v, t.value) for v, t in zip(versions, targets, strict=True))]


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)  # polling pace only


@pytest.mark.slow
def test_the_listener_hears_broadcasts_again_after_redis_restarted_empty(group):
    with RedisServer() as own_redis:
        layers = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                              "CONFIG": {"hosts": [{"address": own_redis.url,
                                                    "socket_timeout": 10,
                                                    "socket_connect_timeout": 1}]}}}
        with override_settings(CHANNEL_LAYERS=layers,
                               FLEXIAI={**settings.FLEXIAI, "CHANNEL_GROUP": group}):
            listener = Listener()
            stop = run(listener)
            assert listener.ready.wait(10) and listener.connected
            members = redis.Redis.from_url(own_redis.url)

            def publish():
                sender = GroupSender(channel_layers.make_backend("default"))
                asyncio.run(sender.send(group, {"type": PROVIDERS_EVENT}))

            publish()
            wait_until(lambda: listener.events_applied == 1, 5, "not heard before the restart")
            own_redis.stop()
            wait_until(lambda: not listener.connected, 10, "the loss went unnoticed")
            own_redis.start()
            wait_until(lambda: members.zcard(f"asgi:group:{group}") == 1, 20, "never re-joined")
            publish()
            wait_until(lambda: listener.events_applied == 2, 5, "not heard after the restart")
            members.close()
            stop()


def run(listener):
    """Run ``listener`` as :meth:`Listener.start` would, in a thread; returns a function
    that stops it and closes its loop."""
    main = listener.loop.create_task(listener._main())

    def until_stopped():
        asyncio.set_event_loop(listener.loop)
        with contextlib.suppress(asyncio.CancelledError):
            listener.loop.run_until_complete(main)

    thread = threading.Thread(target=until_stopped, daemon=True)
    thread.start()

    def stop():
        listener.loop.call_soon_threadsafe(main.cancel)
        thread.join(5)
        listener.loop.close()

    return stop
