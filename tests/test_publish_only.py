"""Broadcast group membership: one-off processes publish what they change but never join
it, and a worker that failed to re-join says so.

A ``manage.py`` command that saves a provider must tell the workers (they drop their
provider snapshot), but were it to join the group its channel would stay a member,
queuing every broadcast for a reader that is gone, until ``group_expiry``. Tested with
a real ``manage.py shell -c`` against the suite's Redis, on a group of its own.
"""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis
from channels.layers import channel_layers

from flexiai_django import process_role

ROOT = Path(__file__).resolve().parent.parent
SAVE_A_PROVIDER = """
from django.core.management import call_command
call_command("migrate", verbosity=0)
from flexiai_django.models import Provider
provider = Provider(name="from-shell", kind="openai", model="m",
                    base_url="http://127.0.0.1:9/v1")
provider.set_api_key("sk-from-shell")
provider.save()
from flexiai_django import broadcast
print("listening:", getattr(broadcast.running_listener(), "listen", True))
"""


@pytest.mark.asyncio
async def test_a_command_saving_a_provider_publishes_without_joining_the_group(tmp_path):
    import asyncio

    group = f"t-{uuid.uuid4().hex[:12]}"
    layer = channel_layers.make_backend("default")
    ours = await layer.new_channel()
    await layer.group_add(group, ours)  # a worker of the deployment
    members = redis.Redis.from_url(os.environ["REDIS_URL"])
    key = f"asgi:group:{group}"
    try:
        assert members.zcard(key) == 1
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
               "FLEXIAI_DB": str(tmp_path / "db.sqlite3"),
               "FLEXIAI_JSON": json.dumps({"CHANNEL_GROUP": group})}
        done = await asyncio.to_thread(
            subprocess.run, [sys.executable, "manage.py", "shell", "-c", SAVE_A_PROVIDER],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        message = await asyncio.wait_for(layer.receive(ours), timeout=5)
        assert message["type"] == "flexiai.providers", "the change was published"
        assert members.zcard(key) == 1, "the command did not join the group"
        assert "listening: False" in done.stdout
    finally:
        await layer.group_discard(group, ours)
        members.delete(key)
        members.close()


@pytest.mark.parametrize(("command", "listens"), [
    (None, True),  # gunicorn, uvicorn, daphne, pytest: not a management command
    ("runserver", True), ("runworker", True),
    ("shell", False), ("migrate", False), ("flexiai_seed_demo", False)])
def test_only_serving_commands_join(command, listens, monkeypatch):
    monkeypatch.setattr(process_role, "_command", command)
    assert process_role.listens() is listens


class Layer:
    """A channel layer whose group_add fails while ``down`` (a frozen or flushed Redis)."""

    group_expiry = 300

    def __init__(self):
        self.down = False
        self.joins = 0

    async def group_add(self, group, channel):
        if self.down:
            raise TimeoutError
        self.joins += 1


def test_a_failed_rejoin_says_the_worker_may_be_out_of_the_group_until_a_join_succeeds(caplog):
    import asyncio
    import logging

    from flexiai_django.broadcast import Listener

    listener = Listener()  # not started: only its re-join is exercised
    listener.layer = layer = Layer()
    listener.connected, listener.channel, listener.joined = True, "ours", 0.0
    assert listener.in_group
    layer.down = True
    with caplog.at_level(logging.WARNING, logger="flexiai_django"):
        for _ in range(3):
            with pytest.raises(TimeoutError):
                asyncio.run(listener._rejoin_if_due())
    assert not listener.in_group and listener.connected
    assert caplog.text.count("could not re-join") == 1
    layer.down = False
    asyncio.run(listener._rejoin_if_due())
    assert listener.in_group and layer.joins == 1
    listener.loop.close()
