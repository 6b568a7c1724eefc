"""Breaker transitions and provider changes, broadcast on one Channels group.

Each worker process runs one listener: a daemon thread with its own event loop and its
own channel-layer instance (channels-redis allows one receiving loop per instance, and
the ASGI server's loop may be receiving for WebSocket consumers). It joins the group,
applies events newer than its snapshots (read off its queue with one blocking pop,
:mod:`flexiai_django.channel_reader`), re-joins well before ``group_expiry``,
re-reads shared state every ``RESYNC_SECONDS`` and after any reconnect, and reconnects
with backoff. It starts lazily on first use and again after a fork (the pid changes),
so it works under gunicorn (sync or uvicorn workers), daphne and runserver alike,
without ASGI lifespan.

Publishing never holds the caller: the state is already in Redis, atomically, so the
broadcast is only a hint, and it is sent from the listener's loop (in one round trip,
:mod:`flexiai_django.group_sender`) while the caller goes on. Sends still queued when
the process exits are waited for, briefly (a one-off command saves and exits at once).

With an in-memory channel layer (one process) there is nobody to tell: events go only
to in-process consumers.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import threading
import time
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import BaseChannelLayer, InMemoryChannelLayer, channel_layers
from django.dispatch import receiver

from flexiai_django import first_tokens, process_role, provider_cache, recent_calls, signals
from flexiai_django.breakers import get_store
from flexiai_django.breakers.state import BreakerState
from flexiai_django.channel_reader import ChannelReader
from flexiai_django.conf import get_settings
from flexiai_django.group_sender import GroupSender
from flexiai_django.worker import worker_id

logger = logging.getLogger("flexiai_django")

BREAKER_EVENT = "flexiai.breaker"
PROVIDERS_EVENT = "flexiai.providers"
STATS_EVENT = "flexiai.stats"
#: Seconds between re-joins of the broadcast group (see Listener._rejoin_if_due).
REJOIN_SECONDS = 5.0


def _shared_layer_configured() -> bool:
    alias = get_settings().CHANNEL_LAYER
    try:
        backend = channel_layers.configs[alias]["BACKEND"]
    except KeyError:
        return False
    return "InMemoryChannelLayer" not in backend


class Listener:
    """One per process; see the module docstring. ``listen=False`` (a one-off command,
    :mod:`flexiai_django.process_role`): the loop only sends, it never joins the group."""

    def __init__(self, *, listen: bool = True) -> None:
        self.listen = listen
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.layer: BaseChannelLayer = channel_layers.make_backend(get_settings().CHANNEL_LAYER)
        self.sender = GroupSender(self.layer)
        self.reader = ChannelReader(self.layer)
        self.sending: set[concurrent.futures.Future[None]] = set()
        self.ready = threading.Event()
        self.connected = False
        self.events_applied = 0
        self.worker_stats: dict[str, dict[str, Any]] = {}
        self.channel: str | None = None
        self.joined = 0.0
        self.rejoin_failed = False
        self.thread = threading.Thread(target=self._run, name="flexiai-listener", daemon=True)

    def start(self) -> Listener:
        self.thread.start()
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        if not self.listen:
            self.ready.set()
            self.loop.run_forever()
            return
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        await asyncio.gather(self._receive_forever(), self._resync_forever(),
                             self._stats_forever())

    async def _receive_forever(self) -> None:
        backoff = 0.1
        while True:
            try:
                channel = await self.layer.new_channel()
                await self._join(channel)
                self.channel = channel
                self.connected = True
                self.ready.set()
                await self.loop.run_in_executor(None, get_store().refresh)
                backoff = 0.1
                while True:
                    message = await self.reader.receive(channel)
                    self.handle(message)
            except Exception as exc:
                if self.connected:
                    logger.warning("broadcast listener lost its channel layer (%s)",
                                   type(exc).__name__)
                self.connected = False
                self.ready.set()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _join(self, channel: str) -> None:
        await self.layer.group_add(get_settings().CHANNEL_GROUP, channel)
        self.joined = time.monotonic()
        self.rejoin_failed = False

    async def _rejoin_if_due(self) -> None:
        """Join the group again every few seconds: membership lives in Redis, so a Redis
        restart (it keeps nothing on disk) or a flush would otherwise leave this worker
        deaf to broadcasts until the membership's own expiry, with only re-reads to go on."""
        expiry = getattr(self.layer, "group_expiry", 86400)
        if self.connected and self.channel and time.monotonic() - self.joined > min(
                expiry / 4, REJOIN_SECONDS):
            try:
                await self._join(self.channel)
            except Exception as exc:
                # Perhaps not in the group any more: say so (/health's sync_enabled) until
                # a join succeeds, here or by the receive loop reconnecting.
                if not self.rejoin_failed:
                    logger.warning("broadcast listener could not re-join its group (%s)",
                                   type(exc).__name__)
                self.rejoin_failed = True
                raise

    @property
    def in_group(self) -> bool:
        """Receiving, and the last join of the group succeeded."""
        return self.connected and not self.rejoin_failed

    async def _resync_forever(self) -> None:
        while True:
            await asyncio.sleep(get_settings().RESYNC_SECONDS)
            try:
                store = get_store()
                if not store.describe()["connected"]:
                    await self.loop.run_in_executor(None, getattr(store, "ping", bool))
                await self.loop.run_in_executor(None, store.refresh)
                await self._rejoin_if_due()
            except Exception as exc:
                logger.debug("resync failed: %s", type(exc).__name__)

    async def _stats_forever(self) -> None:
        """Publish this worker's recent provider figures when they change, and keep its
        times to first token in Redis for the capacity planner (:mod:`.first_tokens`)."""
        last: dict[str, recent_calls.Summary] = {}
        while True:
            settings = get_settings()
            await asyncio.sleep(settings.STATS_PUBLISH_SECONDS)
            try:
                await self.loop.run_in_executor(None, first_tokens.board().share)
            except Exception as exc:
                logger.debug("first-token figures not shared: %s", type(exc).__name__)
            summary = recent_calls.local().summary(settings.STATS_WINDOW_SECONDS)
            if summary == last or not self.connected:
                continue
            try:
                await self.sender.send(settings.CHANNEL_GROUP, stats_message(summary))
                last = summary
            except Exception as exc:
                logger.debug("stats not published: %s", type(exc).__name__)

    def handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == BREAKER_EVENT:
            state = BreakerState.from_dict(message["state"])
            if get_store().apply_remote(message["name"], state):
                self.events_applied += 1
        elif kind == PROVIDERS_EVENT:
            provider_cache.invalidate()
            self.events_applied += 1
        elif kind == STATS_EVENT:
            self.worker_stats[str(message.get("worker"))] = message

    def publish(self, message: dict[str, Any]) -> None:
        """Fire and forget from any thread: the send runs on the listener's loop. It skips
        this listener, whose process has the change already."""
        group = get_settings().CHANNEL_GROUP
        send = self.sender.send(group, message, skip=self.channel)
        future = asyncio.run_coroutine_threadsafe(send, self.loop)
        self.sending.add(future)
        future.add_done_callback(self._sent)

    def _sent(self, future: concurrent.futures.Future[None]) -> None:
        self.sending.discard(future)
        if not future.cancelled() and (exc := future.exception()) is not None:
            logger.warning("broadcast failed (%s)", type(exc).__name__)

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the sends queued so far; whether they all ended."""
        _, waiting = concurrent.futures.wait(list(self.sending), timeout=timeout)
        return not waiting


_listener: Listener | None = None
_lock = threading.Lock()
_pending: set[asyncio.Task[None]] = set()


def listener() -> Listener | None:
    """This process's listener, started on first call (and again after a fork)."""
    global _listener
    current = _listener
    if current is not None and current.pid == os.getpid():
        return current
    if not _shared_layer_configured():
        return None
    with _lock:
        if _listener is None or _listener.pid != os.getpid():
            _listener = Listener(listen=process_role.listens()).start()
        return _listener


@receiver(signals.store_ready)
def _start_with_the_store(**kwargs: Any) -> None:
    listener()


def leave(timeout: float = 1.0) -> bool:
    """Leave the group now, for a worker that is shutting down (gunicorn's ``worker_exit``).

    Without it the worker's channel stays a member until ``group_expiry``, and every
    broadcast is also queued for it until then. Returns whether the group was left.
    """
    current = _listener
    if current is None or current.pid != os.getpid() or current.channel is None:
        return False
    future = asyncio.run_coroutine_threadsafe(
        current.layer.group_discard(get_settings().CHANNEL_GROUP, current.channel), current.loop)
    try:
        future.result(timeout=timeout)
    except Exception as exc:
        logger.warning("could not leave the broadcast group (%s)", type(exc).__name__)
        return False
    return True


@atexit.register
def flush(timeout: float = 1.0) -> bool:
    """Wait for this process's queued broadcasts (at exit, and for tests)."""
    current = running_listener()
    return current.flush(timeout) if current is not None else True


def running_listener() -> Listener | None:
    """This process's listener if it has been started, without starting one."""
    current = _listener
    return current if current is not None and current.pid == os.getpid() else None


def stop_listener_for_tests() -> None:
    global _listener
    with _lock:
        _listener = None


def stamped(message: dict[str, Any]) -> dict[str, Any]:
    return {**message, "worker": worker_id(), "sent_at": time.time()}


def stats_message(summary: dict[str, recent_calls.Summary]) -> dict[str, Any]:
    return stamped({"type": STATS_EVENT, "stats": summary,
                    "window": get_settings().STATS_WINDOW_SECONDS})


def publish(message: dict[str, Any]) -> None:
    """Send an event to every worker (and to in-process consumers such as the status page)."""
    message = stamped(message)
    shared = listener()
    if shared is not None:
        shared.publish(message)
        return
    layer = channel_layers[get_settings().CHANNEL_LAYER] if channel_layers.configs else None
    if isinstance(layer, InMemoryChannelLayer):
        group = get_settings().CHANNEL_GROUP
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            async_to_sync(layer.group_send)(group, message)
        else:
            task = loop.create_task(layer.group_send(group, message))
            _pending.add(task)
            task.add_done_callback(_pending.discard)


@receiver(signals.breaker_transition)
def _on_transition(sender: Any, name: str, before: BreakerState, after: BreakerState,
                   **kwargs: Any) -> None:
    publish({"type": BREAKER_EVENT, "name": name, "from": before.state.value,
             "state": after.to_dict()})


@receiver(signals.providers_changed)
def _on_providers_changed(**kwargs: Any) -> None:
    publish({"type": PROVIDERS_EVENT})
