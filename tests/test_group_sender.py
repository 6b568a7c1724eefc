"""The one-round-trip group send, read by channels-redis's own ``receive``.

Real channel layers on the suite's Redis, each test on a group of its own: what a
member receives, how many calls to Redis a send took, and who gets nothing.
"""

import asyncio
import os

import pytest
import redis
from channels.layers import InMemoryChannelLayer, channel_layers

from flexiai_django.group_sender import GroupSender, covers

MESSAGE = {"type": "flexiai.breaker", "name": "llm:x", "state": {"version": 3}}


async def joined(layer, group):
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    return channel


async def received(layer, channel):
    return await asyncio.wait_for(layer.receive(channel), timeout=5)


def queued(layer, channel):
    """Messages waiting in ``channel``'s queue in Redis (shared by its layer's channels)."""
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        return client.zcard(layer.prefix + layer.non_local_name(channel))
    finally:
        client.close()


@pytest.mark.asyncio
async def test_every_member_gets_the_message_once_and_a_send_is_one_round_trip(group):
    worker, server = channel_layers.make_backend("default"), channel_layers.make_backend("default")
    listener = await joined(worker, group)
    pages = [await joined(server, group), await joined(server, group)]  # one queue for both
    sender = GroupSender(channel_layers.make_backend("default"))
    assert sender.lean

    await sender.send(group, MESSAGE)
    assert sender.round_trips == 2, "the first send learns the members"
    await sender.send(group, {**MESSAGE, "state": {"version": 4}})
    assert sender.round_trips == 3, "then one call a send"

    for layer, channel in [(worker, listener), (server, pages[0]), (server, pages[1])]:
        assert await received(layer, channel) == MESSAGE
        assert (await received(layer, channel))["state"] == {"version": 4}
    assert queued(worker, listener) == 0 and queued(server, pages[0]) == 0


@pytest.mark.asyncio
async def test_a_channel_that_joined_since_the_last_send_gets_the_next_one(group):
    layer = channel_layers.make_backend("default")
    first = await joined(layer, group)
    sender = GroupSender(channel_layers.make_backend("default"))
    await sender.send(group, MESSAGE)
    assert await received(layer, first) == MESSAGE
    newcomer_layer = channel_layers.make_backend("default")
    newcomer = await joined(newcomer_layer, group)
    sent = sender.round_trips

    await sender.send(group, {**MESSAGE, "name": "llm:y"})

    assert sender.round_trips == sent + 2, "a second call, for the newcomer only"
    assert (await received(newcomer_layer, newcomer))["name"] == "llm:y"
    assert (await received(layer, first))["name"] == "llm:y"
    assert queued(layer, first) == 0, "not twice"


@pytest.mark.asyncio
async def test_a_channel_that_left_gets_nothing_and_its_queue_mates_still_do(group):
    layer = channel_layers.make_backend("default")
    staying, leaving = await joined(layer, group), await joined(layer, group)
    sender = GroupSender(channel_layers.make_backend("default"))
    await sender.send(group, MESSAGE)  # the sender now knows both
    for channel in (staying, leaving):
        assert await received(layer, channel) == MESSAGE
    await layer.group_discard(group, leaving)

    await sender.send(group, {**MESSAGE, "name": "llm:z"})

    assert (await received(layer, staying))["name"] == "llm:z"
    assert queued(layer, staying) == 0, "nothing queued for the channel that left"


@pytest.mark.asyncio
async def test_an_empty_group_costs_one_call_and_other_layers_use_their_own_send(group):
    sender = GroupSender(channel_layers.make_backend("default"))
    await sender.send(group, MESSAGE)
    assert sender.round_trips == 1

    memory = InMemoryChannelLayer()
    assert not covers(memory)
    channel = await memory.new_channel()
    await memory.group_add(group, channel)
    await GroupSender(memory).send(group, MESSAGE)
    assert await memory.receive(channel) == MESSAGE


@pytest.mark.asyncio
async def test_the_skipped_member_gets_nothing_and_the_others_get_it_in_the_same_call(group):
    """A worker's listener is skipped by its own process's sends: it has the change."""
    own_layer, layer = (channel_layers.make_backend("default") for _ in range(2))
    own = await joined(own_layer, group)
    others = [await joined(layer, group), await joined(layer, group)]
    sender = GroupSender(channel_layers.make_backend("default"))
    await sender.send(group, MESSAGE, skip=own)  # learns the members
    sent = sender.round_trips

    await sender.send(group, {**MESSAGE, "name": "llm:w"}, skip=own)

    assert sender.round_trips == sent + 1
    for channel in others:
        assert [(await received(layer, channel))["name"] for _ in range(2)] == ["llm:x", "llm:w"]
    assert queued(own_layer, own) == 0
