"""The status page's WebSocket: who may connect, what it sends, what staff may do through it."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, Permission, User

from flexiai_django import achat, history
from flexiai_django.breakers import breaker, get_store
from flexiai_django.consumers import FORBIDDEN
from flexiai_django.models import BreakerTransition
from flexiai_django.routing import STATUS_SOCKET_PATH, websocket_urlpatterns

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

TIMEOUT = 5


def socket(user: Any) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/" + STATUS_SOCKET_PATH)
    communicator.scope["user"] = user
    return communicator


async def receive_until(communicator: WebsocketCommunicator, kind: str) -> dict[str, Any]:
    """The next message of ``kind`` (stats and other events may come first)."""
    while True:
        message: dict[str, Any] = await communicator.receive_json_from(timeout=TIMEOUT)
        if message["type"] == kind:
            return message


@pytest.fixture
def primary(make_provider: Any) -> Any:
    return make_provider("primary", priority=1)


@pytest.fixture
def staff(db: None) -> User:
    return User.objects.create_superuser("boss", "boss@example.com", "pw")


async def connected(user: Any) -> tuple[WebsocketCommunicator, dict[str, Any]]:
    communicator = socket(user)
    ok, _ = await communicator.connect(timeout=TIMEOUT)
    assert ok
    return communicator, await receive_until(communicator, "snapshot")


async def test_anonymous_users_are_refused() -> None:
    ok, code = await socket(AnonymousUser()).connect(timeout=TIMEOUT)
    assert (ok, code) == (False, FORBIDDEN)


async def test_signed_in_users_who_are_not_staff_are_refused() -> None:
    user = await sync_to_async(User.objects.create_user)("someone", password="pw")
    ok, code = await socket(user).connect(timeout=TIMEOUT)
    assert (ok, code) == (False, FORBIDDEN)


async def test_inactive_staff_are_refused() -> None:
    user = await sync_to_async(User.objects.create_user)("gone", password="pw", is_staff=True,
                                                         is_active=False)
    ok, code = await socket(user).connect(timeout=TIMEOUT)
    assert (ok, code) == (False, FORBIDDEN)


async def test_staff_without_any_provider_permission_get_nothing(primary: Any) -> None:
    def bare_staff() -> User:
        return User.objects.create_user("clerk", password="pw", is_staff=True)

    communicator = socket(await sync_to_async(bare_staff)())
    ok, code = await communicator.connect(timeout=TIMEOUT)
    assert (ok, code) == (False, FORBIDDEN)
    assert await communicator.receive_nothing(timeout=0.2)


async def test_staff_get_a_snapshot_of_every_provider_on_connect(staff: User,
                                                                 make_provider: Any) -> None:
    await sync_to_async(make_provider)("primary", priority=1)
    await sync_to_async(make_provider)("backup", priority=2, enabled=False)
    await sync_to_async(breaker("llm:primary").force_open)()
    communicator, snapshot = await connected(staff)
    rows = {p["name"]: p for p in snapshot["providers"]}
    assert [p["name"] for p in snapshot["providers"]] == ["primary", "backup"]
    assert rows["primary"]["state"]["state"] == "forced_open"
    assert rows["backup"]["state"]["state"] == "closed"
    assert rows["backup"]["enabled"] is False
    assert snapshot["server_time"] > 0 and snapshot["worker"]
    await communicator.disconnect()


async def test_a_transition_anywhere_reaches_the_page_as_it_happens(staff: User,
                                                                    primary: Any) -> None:
    communicator, _ = await connected(staff)
    await sync_to_async(breaker("llm:primary").force_open)()
    event = await receive_until(communicator, "breaker")
    assert (event["breaker"], event["from"], event["state"]["state"]) == (
        "llm:primary", "closed", "forced_open")
    assert event["worker"]
    await communicator.disconnect()


async def test_staff_can_force_open_and_reset_a_breaker_from_the_page(staff: User,
                                                                      primary: Any) -> None:
    communicator, _ = await connected(staff)
    await communicator.send_json_to({"action": "force_open", "provider": "primary"})
    result = await receive_until(communicator, "result")
    assert result == {"type": "result", "ok": True, "action": "force_open",
                      "provider": "primary", "state": "forced_open"}
    assert (await receive_until(communicator, "breaker"))["state"]["state"] == "forced_open"
    assert get_store().get("llm:primary").state == "forced_open"

    await communicator.send_json_to({"action": "reset", "provider": "primary"})
    assert (await receive_until(communicator, "result"))["state"] == "closed"
    assert get_store().get("llm:primary").state == "closed"
    await communicator.disconnect()


async def test_staff_without_the_change_permission_may_watch_but_not_act(primary: Any) -> None:
    def viewer() -> User:
        user = User.objects.create_user("viewer", password="pw", is_staff=True)
        user.user_permissions.add(Permission.objects.get(codename="view_provider"))
        return User.objects.get(pk=user.pk)

    communicator, _ = await connected(await sync_to_async(viewer)())
    await communicator.send_json_to({"action": "disable", "provider": "primary"})
    result = await receive_until(communicator, "result")
    assert result["ok"] is False and "may not" in result["error"]
    assert get_store().get("llm:primary").state == "closed"
    await communicator.disconnect()


@pytest.mark.parametrize("message, error", [
    ({"action": "explode", "provider": "primary"}, "Unknown action"),
    ({"action": "reset"}, "Unknown action"),
    ({"action": "reset", "provider": "nobody"}, "No provider named 'nobody'"),
    (["reset"], "JSON object"),
])
async def test_bad_actions_get_a_clear_answer_and_change_nothing(
        staff: User, primary: Any, message: Any, error: str) -> None:
    communicator, _ = await connected(staff)
    await communicator.send_json_to(message)
    result = await receive_until(communicator, "result")
    assert result["ok"] is False and error in result["error"]
    assert get_store().get("llm:primary").state == "closed"
    await communicator.disconnect()


async def test_the_snapshot_carries_recent_transitions_newest_first(staff: User,
                                                                    primary: Any) -> None:
    await sync_to_async(BreakerTransition.objects.all().delete)()
    await sync_to_async(breaker("llm:primary").force_open)()
    await sync_to_async(breaker("llm:primary").reset)()
    history.flush()
    communicator, snapshot = await connected(staff)
    moves = [(t["provider"], t["from"], t["to"]) for t in snapshot["transitions"]]
    assert moves[:2] == [("primary", "forced_open", "closed"), ("primary", "closed", "forced_open")]
    assert snapshot["providers"][0]["worker"] == snapshot["transitions"][0]["worker"]
    await communicator.disconnect()


async def test_each_workers_recent_latency_and_success_reach_the_page(
        staff: User, primary: Any, fake_upstream: Any, settings: Any) -> None:
    settings.FLEXIAI = {**settings.FLEXIAI, "STATS_PUBLISH_SECONDS": 0.05}
    communicator, _ = await connected(staff)
    fake_upstream.set_fault("primary", status=500, times=1)
    for _ in range(4):
        await achat("hello", model="primary")
    while True:
        event = await receive_until(communicator, "stats")
        figures = event["stats"].get("primary", {"count": 0})
        if figures["count"] >= 4:
            break
    assert figures["ok"] == figures["count"] - 1
    assert figures["latency_ms_sum"] > 0 and event["worker"]
    await communicator.disconnect()
