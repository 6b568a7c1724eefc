"""The broadcast listener's receive: one blocking pop on its channel's queue in Redis.

channels-redis's ``receive`` on a process-local channel (``specific.<client>!<id>``) runs
a pair of tasks and a lock per message, a script before each ``BZPOPMIN`` and, after it,
a second round trip that copies the message to a back-up queue (a third takes it out
again), so that a cancelled receive loses nothing. The listener's channel is read by the
listener alone, which cancels a receive only when it stops, and delivery to it is
at-most-once anyway (its periodic re-read covers a miss): here the ``BZPOPMIN`` on the
same queue key, decoded with the layer's own serializer, is the whole receive. That is
one round trip less between a transition and each worker applying it, and about a third
of the CPU per message (bench/README.md, 2026-12-03), which on a busy machine is what the
delay is made of.

Only the listener reads this way: group membership, sends and the status page's
consumers stay channels-redis's own. A layer :func:`group_sender.covers` does not cover
(in-memory, sharded, another channels-redis major) uses its own ``receive``.
"""

from __future__ import annotations

from typing import Any

from channels.layers import BaseChannelLayer

from flexiai_django.group_sender import covers


class ChannelReader:
    """Receives on process-local channels of one layer, from one event loop.

    The pops go out on one connection the reader keeps, made from the layer's own pool
    (its address, TLS, Sentinel and timeouts), so a message costs no pool hand-over and
    no retry wrapper (~0.1 ms of CPU here). On any error the connection is closed and
    the error goes to the listener, which reconnects.
    """

    def __init__(self, layer: BaseChannelLayer) -> None:
        self.layer = layer
        self.lean = covers(layer)
        self._connection: Any = None

    async def receive(self, channel: str) -> dict[str, Any]:
        if not self.lean or "!" not in channel:
            received: dict[str, Any] = await self.layer.receive(channel)
            return received
        layer: Any = self.layer
        # Every "!" channel of this layer instance shares the one queue: the listener's
        # layer is its own, and what arrives there is meant for it (the same message
        # names all of its channels that are members, so it comes once).
        key = layer.prefix + layer.non_local_name(channel)
        if self._connection is None:
            self._connection = layer.connection(0).connection_pool.make_connection()
        connection = self._connection
        try:
            while True:
                await connection.send_command("BZPOPMIN", key, layer.brpop_timeout)
                popped = await connection.read_response()
                if popped is not None:
                    break
        except BaseException:
            self._connection = None
            await connection.disconnect(nowait=True)
            raise
        message: dict[str, Any] = layer.deserialize(popped[1])
        message.pop("__asgi_channel__", None)
        return message
