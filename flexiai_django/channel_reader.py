"""The broadcast listener's receive: one blocking pop on its channel's queue in Redis.

channels-redis's ``receive`` on a process-local channel (``specific.<client>!<id>``) runs
a pair of tasks and a lock per message, and after its ``BZPOPMIN`` waits for a second
round trip that copies the message to a back-up queue (a third takes it out again), so
that a cancelled receive loses nothing. The listener's channel is read by the listener
alone, which never cancels a receive, and delivery to it is at-most-once anyway (its
periodic re-read covers a miss): here the ``BZPOPMIN`` on the same queue key, decoded
with the layer's own serializer, is the whole receive. That is one round trip and most
of the per-message Python less between a transition and its worker applying it.

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

    The pop goes out on a connection of the layer's pool that the reader keeps, so a
    message costs no pool hand-over and no retry wrapper (a third of its Python here);
    on any error the connection is dropped and the error goes to the listener, which
    reconnects.
    """

    def __init__(self, layer: BaseChannelLayer) -> None:
        self.layer = layer
        self.lean = covers(layer)
        self._held: tuple[Any, Any] | None = None  # (pool, connection)

    async def receive(self, channel: str) -> dict[str, Any]:
        if not self.lean or "!" not in channel:
            received: dict[str, Any] = await self.layer.receive(channel)
            return received
        layer: Any = self.layer
        # Every "!" channel of this layer instance shares the one queue: the listener's
        # layer is its own, and what arrives there is meant for it (the same message
        # names all of its channels that are members, so it comes once).
        key = layer.prefix + layer.non_local_name(channel)
        if self._held is None:
            pool = layer.connection(0).connection_pool
            self._held = (pool, await pool.get_connection())
        pool, connection = self._held
        try:
            while True:
                await connection.send_command("BZPOPMIN", key, layer.brpop_timeout)
                popped = await connection.read_response()
                if popped is not None:
                    break
        except BaseException:
            self._held = None
            await connection.disconnect(nowait=True)
            await pool.release(connection)
            raise
        message: dict[str, Any] = layer.deserialize(popped[1])
        message.pop("__asgi_channel__", None)
        return message
