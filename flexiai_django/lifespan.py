"""ASGI lifespan for servers that send it (uvicorn): leave the broadcast group and stop
the active prober on shutdown.

Nothing depends on it: daphne sends no lifespan events (wrapped in
:class:`flexiai_django.daphne_drain.DrainOnSigterm` it leaves on SIGTERM), and a worker
that never leaves drops out of the group after ``group_expiry``. It only saves the
group from queueing every broadcast for a worker that is gone. Route it with
``ProtocolTypeRouter({..., "lifespan": flexiai_django.lifespan.application})``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from flexiai_django import active_probes, broadcast, warmup


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await asyncio.to_thread(broadcast.leave)
            await asyncio.to_thread(active_probes.stop)
            await asyncio.to_thread(warmup.stop)
            await send({"type": "lifespan.shutdown.complete"})
            return
