"""``GET /metrics``: Prometheus text, added up over every worker process.

django-prometheus's exporter does the rendering: the multiprocess collector when
``PROMETHEUS_MULTIPROC_DIR`` is set, the process's registry otherwise. Before it runs,
the shared-state gauges are set from the store, so any worker answers the same.

No authentication, like django-prometheus: scrape it on an internal network and keep it
off the public edge (``deploy/nginx.conf`` refuses it). Label values are provider and
breaker names, tiers, states and outcomes only.
"""

from __future__ import annotations

import time

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from django_prometheus.exports import ExportToDjangoView

from flexiai_django import metrics
from flexiai_django.breakers import get_store
from flexiai_django.capacity.outputs import last_decisions
from flexiai_django.provider_cache import aget_providers
from flexiai_django.providers.base import ProviderConfig


def _render(request: HttpRequest, providers: tuple[ProviderConfig, ...]) -> HttpResponse:
    """Blocking part (a Redis read, the metric files): run off the event loop."""
    store = get_store()
    ping = getattr(store, "ping", None)
    if callable(ping):
        ping()  # the connectivity gauge says what Redis does now, not after the last error
    states = store.all()
    metrics.set_shared_state(states, providers, connected=bool(store.describe()["connected"]),
                             now=time.time())
    metrics.set_capacity(last_decisions().values())
    response: HttpResponse = ExportToDjangoView(request)
    return response


@require_GET
async def export(request: HttpRequest) -> HttpResponse:
    providers = await aget_providers()
    return await sync_to_async(_render, thread_sensitive=False)(request, providers)
