"""Publishing a transition never holds its caller.

The state is in Redis before the broadcast starts, so the broadcast is only a hint: a
sync caller (an admin action, ``force()``) goes on while the listener's loop sends, and
sends still queued are waited for at exit (``tests/test_publish_only.py`` checks that a
command that exits at once still publishes). Real channel layer on the suite's Redis.
"""

import asyncio
import threading
import time
import uuid

import pytest
from channels.layers import channel_layers
from django.test import override_settings

from flexiai_django.broadcast import Listener


@pytest.mark.asyncio
async def test_a_sync_publish_returns_while_the_send_is_still_waiting_and_it_goes_out_after():
    group = f"t-{uuid.uuid4().hex[:12]}"
    member = channel_layers.make_backend("default")
    channel = await member.new_channel()
    await member.group_add(group, channel)
    with override_settings(FLEXIAI={"CHANNEL_GROUP": group}):
        listener = Listener(listen=False).start()
        assert listener.ready.wait(10)
        busy = threading.Event()
        listener.loop.call_soon_threadsafe(busy.wait, 30)  # its loop can't send yet
        try:
            started = time.monotonic()
            await asyncio.to_thread(listener.publish, {"type": "flexiai.providers"})
            held = time.monotonic() - started
        finally:
            busy.set()
        assert held < 0.5, f"the caller waited {held:.2f}s for the send"
        assert await asyncio.to_thread(listener.flush, 10)
        assert (await asyncio.wait_for(member.receive(channel), 5))["type"] == "flexiai.providers"
        await member.group_discard(group, channel)
        await asyncio.to_thread(stop, listener)


def stop(listener):
    """Stop and close the listener's loop (from a thread with no loop of its own running:
    closing it flushes its channel layer)."""
    listener.loop.call_soon_threadsafe(listener.loop.stop)
    listener.thread.join(5)
    listener.loop.close()
