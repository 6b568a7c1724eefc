import os
import uuid

import pytest
import redis


@pytest.fixture(autouse=True)
def _fresh_state(flexiai_reset: None) -> None:
    """Every test starts with no breakers, no cached providers and an empty answer cache."""


@pytest.fixture
def group():
    """A channel-layer group of this test's own, deleted from Redis afterwards."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    client.delete(f"asgi:group:{name}")
    client.close()
