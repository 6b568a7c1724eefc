"""The status page's WebSocket: staff who may see providers; a snapshot, then events live.

Mount it behind ``OriginValidator(AuthMiddlewareStack(...))`` (see
:mod:`flexiai_django.routing` and :mod:`flexiai_django.origins`). Connecting needs an
active staff user with the view or change permission on providers (the same rule as the
page); the buttons' actions need the change permission, checked here on every action.
It joins the same Channels group as the workers' listeners, so it sees every breaker
transition in the deployment as it happens, and forwards it. Actions (reset, force open,
disable) go to the shared store; the transition they cause comes back to every page
through the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from flexiai_django import broadcast, status_page
from flexiai_django.breakers import get_store
from flexiai_django.conf import get_settings
from flexiai_django.providers.base import breaker_name_for

logger = logging.getLogger("flexiai_django")

#: Close codes (4000–4999 are the application's): the page stops reconnecting on these.
FORBIDDEN = 4403
VIEW_PERMISSION = "flexiai_django.view_provider"
CHANGE_PERMISSION = "flexiai_django.change_provider"


class StatusConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.channel_layer_alias = get_settings().CHANNEL_LAYER
        self._ticker: asyncio.Task[None] | None = None
        self._inflight: asyncio.Task[None] | None = None

    def _user(self) -> Any:
        return self.scope.get("user")

    async def connect(self) -> None:
        if not await self._may_view():
            await self.close(code=FORBIDDEN)
            return
        group = get_settings().CHANNEL_GROUP
        await self.channel_layer.group_add(group, self.channel_name)
        self.groups.append(group)
        await self.accept()
        await self.send_json(await status_page.snapshot())
        if broadcast.listener() is None:  # one process, no listener: push our own figures
            self._ticker = asyncio.create_task(self._tick_local_stats())
        self._inflight = asyncio.create_task(self._tick_inflight())

    async def disconnect(self, code: int) -> None:
        for task in (self._ticker, self._inflight):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _tick_inflight(self) -> None:
        """In-flight counts change with every request: re-read them for this page."""
        while True:
            await asyncio.sleep(get_settings().STATS_PUBLISH_SECONDS)
            try:
                await self.send_json(await status_page.ainflight_message())
            except Exception as exc:  # Redis out: the next tick tries again
                logger.debug("in-flight counts not sent: %s", type(exc).__name__)

    async def _tick_local_stats(self) -> None:
        while True:
            await asyncio.sleep(get_settings().STATS_PUBLISH_SECONDS)
            message = status_page.worker_stats()
            for event in message.values():
                await self.flexiai_stats(event)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict):
            await self._result(False, error="Send a JSON object.")
            return
        action, provider = content.get("action"), content.get("provider")
        if action == "snapshot":
            await self.send_json(await status_page.snapshot())
            return
        if action not in status_page.ACTIONS or not isinstance(provider, str):
            await self._result(False, action=action, error=(
                f"Unknown action; use one of {', '.join(status_page.ACTIONS)} with a provider."))
            return
        if not await database_sync_to_async(self._may_change)():
            await self._result(False, action=action, provider=provider,
                               error="You may not change providers.")
            return
        if not await database_sync_to_async(self._exists)(provider):
            await self._result(False, action=action, provider=provider,
                               error=f"No provider named '{provider}'.")
            return
        try:
            state = await sync_to_async(get_store().force, thread_sensitive=False)(
                breaker_name_for(provider), status_page.ACTIONS[action])
        except Exception as exc:
            logger.warning("status page action failed (%s)", type(exc).__name__)
            await self._result(False, action=action, provider=provider,
                               error="The breaker store did not answer; try again.")
            return
        await self._result(True, action=action, provider=provider, state=state.state.value)

    async def _may_view(self) -> bool:
        user = self._user()
        if user is None or not (user.is_active and user.is_staff):
            return False
        return bool(await user.ahas_perm(VIEW_PERMISSION)
                    or await user.ahas_perm(CHANGE_PERMISSION))

    def _may_change(self) -> bool:
        user = self._user()
        return bool(user.is_active and user.is_staff and user.has_perm(CHANGE_PERMISSION))

    @staticmethod
    def _exists(provider: str) -> bool:
        from flexiai_django.models import Provider

        return Provider.objects.filter(name=provider).exists()

    async def _result(self, ok: bool, **fields: Any) -> None:
        await self.send_json({"type": "result", "ok": ok, **fields})

    # Group events (type "flexiai.breaker" → flexiai_breaker, and so on).

    async def flexiai_breaker(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "breaker", "breaker": event["name"],
                              "from": event.get("from"), "state": event["state"],
                              "worker": event.get("worker"), "sent_at": event.get("sent_at")})

    async def flexiai_providers(self, event: dict[str, Any]) -> None:
        await self.send_json(await status_page.snapshot())

    async def flexiai_capacity(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "capacity", "decisions": event.get("decisions", []),
                              "sent_at": event.get("sent_at")})

    async def flexiai_stats(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "stats", "worker": event.get("worker"),
                              "stats": event.get("stats", {}),
                              "sent_at": event.get("sent_at")})
