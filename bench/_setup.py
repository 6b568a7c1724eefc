"""Shared set-up for the benchmarks: an isolated Django, a fake upstream, stats and tables.

Importing this module puts the repository root on ``sys.path`` (the scripts run as
``python bench/<name>.py``, so only ``bench/`` is there otherwise). Nothing here touches
the developer's database: every run migrates a fresh SQLite file in a temporary
directory, removed at exit.
"""

from __future__ import annotations

import atexit
import math
import os
import platform
import secrets
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_API_OF_KIND = {
    "openai": "openai",
    "openai_compatible": "openai",
    "anthropic": "anthropic",
    "ollama": "ollama",
}
_configured = False


def configure_django(*, redis: bool = False) -> None:
    """Point Django at a throwaway SQLite DB, pick the cache, ``django.setup()`` and migrate.

    Without ``redis`` the embedded default is used (REDIS_URL unset: local-memory cache).
    With it, ``REDIS_URL`` from the environment is used, or a throwaway ``redis-server``
    is started when none is set.
    """
    global _configured
    if _configured:
        return
    tmp = tempfile.mkdtemp(prefix="flexiai-bench-")
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    os.environ["DJANGO_SETTINGS_MODULE"] = "flexiai_site.settings"
    os.environ["FLEXIAI_DB"] = str(Path(tmp) / "bench.sqlite3")
    os.environ["FLEXIAI_VAR_DIR"] = tmp
    # Production-like: with DEBUG on, Django keeps a log of every SQL query in memory.
    os.environ.setdefault("DJANGO_DEBUG", "0")
    # With DEBUG off the settings refuse to load without a secret key of their own.
    os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
    if redis:
        if not os.environ.get("REDIS_URL"):
            from flexiai_django.testing.redis_server import RedisServer

            server = RedisServer().start()
            atexit.register(server.close)
            os.environ["REDIS_URL"] = server.url
    else:
        os.environ.pop("REDIS_URL", None)

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    _configured = True


def setup(*, redis: bool = False) -> Any:
    """:func:`configure_django`, then start a :class:`FakeUpstream` (stopped at exit)."""
    configure_django(redis=redis)
    from flexiai_django.testing.fake_upstream import FakeUpstream

    upstream = FakeUpstream().start()
    atexit.register(upstream.stop)
    return upstream


def cache_backend() -> str:
    """What the answer-cache tier writes to in this run (for the headline)."""
    from django.conf import settings

    backend: str = settings.CACHES["default"]["BACKEND"]
    return backend.rsplit(".", 1)[-1]


def make_provider(
    upstream: Any,
    name: str = "bench",
    *,
    kind: str = "openai_compatible",
    scope: str | None = None,
    model: str | None = None,
    priority: int = 1,
    timeout: float = 30.0,
) -> Any:
    """A Provider row pointing at ``upstream``'s scope (default: the provider's name)."""
    from flexiai_django import provider_cache
    from flexiai_django.models import Provider

    provider = Provider.objects.create(
        name=name,
        kind=kind,
        base_url=upstream.base_url(scope if scope is not None else name, api=_API_OF_KIND[kind]),
        model=model or f"{name}-model",
        priority=priority,
        timeout=timeout,
    )
    provider_cache.invalidate()
    return provider


# --- figures ----------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, ``q`` in [0, 100]."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def stats(values: Sequence[float]) -> dict[str, float]:
    """p50, p99 and mean of ``values`` (in whatever unit they are)."""
    return {
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "mean": sum(values) / len(values) if values else math.nan,
    }


def fmt(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}"


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [row[0].ljust(widths[0])]
        parts += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        return "  ".join(parts).rstrip()

    print()
    print(title)
    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))
    sys.stdout.flush()


def machine_line() -> str:
    return (
        f"machine: {platform.platform()} | cpus: {os.cpu_count()} | "
        f"python {platform.python_version()} ({platform.python_implementation()})"
    )


def print_header(title: str, **params: Any) -> None:
    """The benchmark's name, its parameters and the machine line."""
    print(f"== {title} ==")
    if params:
        print("params: " + ", ".join(f"{k}={v}" for k, v in params.items()))
    print(machine_line())
    sys.stdout.flush()
