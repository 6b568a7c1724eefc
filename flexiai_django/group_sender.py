"""``group_send`` for channels-redis in one round trip to Redis instead of four.

channels-redis's ``group_send`` trims the group, reads its members, trims each member's
queue and then sends with an ``EVAL`` that carries the script's text: four sequential
round trips, which is most of the time a breaker transition takes to reach the other
workers on a busy machine. Here one registered script (``EVALSHA``) trims, checks each
recipient is still a member, sends, and returns the group's members, which the next
send uses. Membership is checked inside the script, so nobody who left gets a message
and nobody gets one twice; a channel that joined since the last send gets it from a
second call, made only when membership changed.

The messages are exactly what channels-redis writes (its serializer, queue keys,
capacity and expiry), so every receiver, the status page's consumers included, reads
them unchanged. A layer this does not cover (another backend, or a sharded layer with
several hosts) gets its own ``group_send``.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

from channels.layers import BaseChannelLayer

logger = logging.getLogger("flexiai_django")

# KEYS: the group, then one queue per recipient. ARGV: now, group_expiry, expiry, then
# per queue: capacity, message, channel count, channels. Returns {queues over capacity,
# queues skipped (by KEYS index) because one of their channels left, members}.
SEND = """
local now = ARGV[1]
local cutoff = math.floor(tonumber(now))
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, cutoff - tonumber(ARGV[2]))
local expiry = tonumber(ARGV[3])
local over, skipped, at = 0, {}, 4
for i = 2, #KEYS do
  local capacity, message, count = tonumber(ARGV[at]), ARGV[at + 1], tonumber(ARGV[at + 2])
  local members = true
  for j = 1, count do
    if not redis.call('ZSCORE', KEYS[1], ARGV[at + 2 + j]) then members = false end
  end
  at = at + 3 + count
  if not members then
    skipped[#skipped + 1] = i
  else
    redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, cutoff - expiry)
    if redis.call('ZCARD', KEYS[i]) < capacity then
      redis.call('ZADD', KEYS[i], now, message)
      redis.call('EXPIRE', KEYS[i], expiry)
    else
      over = over + 1
    end
  end
end
return {over, skipped, redis.call('ZRANGE', KEYS[1], 0, -1)}
"""


def covers(layer: BaseChannelLayer) -> bool:
    """Whether :class:`GroupSender` sends, and :class:`.channel_reader.ChannelReader`
    receives, for ``layer`` (else they use its ``group_send`` and ``receive``)."""
    try:
        from channels_redis.core import RedisChannelLayer
    except ImportError:
        return False
    return (isinstance(layer, RedisChannelLayer) and getattr(layer, "ring_size", 0) == 1
            and _known_layout())


def _known_layout() -> bool:
    """The queue keys and message format written here (and read by the listener) are
    channels-redis 4's: another major version falls back to its own methods."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("channels-redis").split(".")[0] == "4"
    except PackageNotFoundError:
        return False


class GroupSender:
    """Sends to groups of one channel layer, from one event loop (the listener's).

    ``round_trips`` counts the calls to Redis, for tests and the benchmark.
    """

    def __init__(self, layer: BaseChannelLayer) -> None:
        self.layer = layer
        self.lean = covers(layer)
        self.round_trips = 0
        self._members: dict[str, list[str]] = {}
        self._script: Any = None

    async def send(self, group: str, message: dict[str, Any], *,
                   skip: str | None = None) -> None:
        """``skip``: a member channel not to send to (the sender's own listener, which has
        what it publishes already); channels-redis's ``group_send`` sends to every member."""
        if not self.lean:
            await self.layer.group_send(group, message)
            return
        delivered: set[str] = {skip} if skip else set()
        for _ in range(3):  # churn while we send: rare; after three tries it is at-most-once
            pending = [c for c in self._members.get(group, []) if c not in delivered]
            members, reached = await self._send(group, pending, message)
            self._members[group] = members
            delivered |= reached
            if delivered.issuperset(members):
                return

    async def _send(self, group: str, channels: list[str],
                    message: dict[str, Any]) -> tuple[list[str], set[str]]:
        """(the group's members, the channels sent to) after one script call."""
        layer: Any = self.layer
        queues: dict[str, list[str]] = defaultdict(list)
        for channel in channels:
            local = layer.non_local_name(channel) if "!" in channel else channel
            queues[layer.prefix + local].append(channel)
        args: list[Any] = [time.time(), layer.group_expiry, int(layer.expiry)]
        for names in queues.values():
            payload = layer.serialize({**message, "__asgi_channel__": names})
            args += [layer.get_capacity(names[0]), payload, len(names), *names]
        connection = layer.connection(0)
        if self._script is None:
            self._script = connection.register_script(SEND)
        self.round_trips += 1
        over, skipped, members = await self._script(
            keys=[f"{layer.prefix}:group:{group}", *queues], args=args, client=connection)
        if over:
            logger.info("%s of %s channels over capacity in group %s", over, len(channels),
                        group)
        batches = list(queues.values())
        missed = {channel for index in skipped for channel in batches[index - 2]}
        return [m.decode() for m in members], set(channels) - missed
