"""Where a gateway worker's time goes: py-spy samples summarised for ``bench/gateway.py``.

``py-spy record --format raw`` writes one line per distinct stack (frames outermost
first, ``;``-separated, then a sample count). Two views are printed: time by package
(each sample charged to the innermost frame of the package that owns it: uvicorn,
django, httpx, ..., and ours by module), and the heaviest of our own functions counted
inclusively (a function is counted once per sample however deep it recurses).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")
#: Top-level package (py-spy names files relative to sys.path) -> what it is counted as.
PACKAGES = {
    "uvicorn": "uvicorn", "uvicorn_worker": "uvicorn", "httptools": "uvicorn",
    "django": "django", "asgiref": "asgiref", "httpx": "httpx", "httpcore": "httpx",
    "h11": "httpx", "httpx_aiohttp": "aiohttp", "aiohttp": "aiohttp", "yarl": "aiohttp",
    "multidict": "aiohttp", "redis": "redis-py", "django_redis": "redis-py",
    "channels_redis": "channels", "channels": "channels", "prometheus_client": "prometheus",
    "django_prometheus": "prometheus", "logging": "logging", "json": "json",
    "asyncio": "asyncio", "concurrent": "threads", "threading.py": "threads",
    "opentelemetry": "tracing", "whitenoise": "whitenoise", "orjson": "json",
}


def record(pid: int, seconds: int, out: Path) -> None:
    """Sample ``pid`` for ``seconds`` (py-spy needs ptrace rights: root or the same user
    with ``kernel.yama.ptrace_scope`` 0).

    Only the thread holding the GIL is sampled (``--gil``), with the process paused for
    each sample: without them, idle pool threads and frames blocked in system calls
    (``getrandom``, ``futex``, socket writes) took most of the samples here and hid where
    the CPU goes.
    """
    py_spy = shutil.which("py-spy") or str(Path(__file__).parent.parent / ".venv/bin/py-spy")
    subprocess.run([py_spy, "record", "--pid", str(pid), "--duration", str(seconds),
                    "--rate", "200", "--format", "raw", "--output", str(out), "--gil",
                    ], check=True, capture_output=True)


def _package(path: str) -> str | None:
    top = path.split("/", 1)[0]
    if top == "flexiai_django":
        return path.removesuffix(".py").replace("/", ".")
    return PACKAGES.get(top)


def summarise(raw: Path, top: int = 20) -> str:
    by_package: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [FRAME.match(f) for f in stack.split(";")]
        charged = "other (stdlib outside asyncio/logging/json, C)"
        seen: set[str] = set()
        for match in frames:
            if match is None:
                continue
            package = _package(match["file"])
            if package is not None:
                charged = package
            if package is not None and package.startswith("flexiai_django"):
                name = f"{package}.{match['func']}"
                if name not in seen:
                    seen.add(name)
                    ours[name] += count
        by_package[charged] += count
    if not total:
        return "  (no samples: is py-spy allowed to attach?)"
    lines = [f"  {total} samples; self time by package (innermost frame of a known package):"]
    lines += [f"    {100 * n / total:5.1f}%  {name}" for name, n in by_package.most_common(top)]
    lines.append("  our functions, inclusive:")
    lines += [f"    {100 * n / total:5.1f}%  {name}" for name, n in ours.most_common(top)]
    return "\n".join(lines)
