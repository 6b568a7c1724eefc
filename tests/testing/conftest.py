"""A fake upstream of each test module's own, reset before every test, and a client."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from flexiai_django.testing.fake_upstream import FakeUpstream


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c
