"""A real HAProxy in front of real servers, with the shipped ``deploy/haproxy.cfg``.

The shipped file is written for docker-compose (servers ``app1:8000``, ``app2:8000``,
``bind :80``); :class:`HAProxy` renders it with loopback servers and a free port into a
temporary directory and runs ``haproxy`` in the foreground until stopped. Needs Debian's
``haproxy``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from flexiai_django.testing.proxy_process import ProxyProcess
from flexiai_django.testing.redis_server import free_port
from flexiai_django.testing.servers import wait_until_answering

SHIPPED = Path(__file__).resolve().parents[2] / "deploy" / "haproxy.cfg"
INSTALL_HINT = "apt-get install -y haproxy"


def find_haproxy() -> str | None:
    return shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy",) if os.access(p, os.X_OK)), None)


def render(conf: str, upstreams: list[str], port: int) -> str:
    """The shipped config with its servers and public ``bind`` replaced."""
    servers = "".join(f"    server app{i} {urlsplit(u).netloc}\n"
                      for i, u in enumerate(upstreams, 1))
    conf, replaced = re.subn(r"(?:^ *server \S+ \S+[^\n]*\n)+", servers, conf, flags=re.M)
    if replaced != 1:
        raise ValueError("expected one block of `server` lines in the config")
    return re.sub(r"^( *)bind :80$", rf"\g<1>bind 127.0.0.1:{port}", conf, flags=re.M)


class HAProxy(ProxyProcess):
    """``with HAProxy([url1, url2]) as proxy:`` — ``proxy.url``; started once every server
    has passed its health check."""

    def __init__(self, upstreams: list[str], conf: Path = SHIPPED) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._dir = Path(tempfile.mkdtemp(prefix="flexiai-haproxy-"))
        self._config = self._dir / "haproxy.cfg"
        self._config.write_text(render(conf.read_text(), upstreams, self.port))
        self._log = self._dir / "haproxy.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> HAProxy:
        binary = find_haproxy()
        if binary is None:
            raise RuntimeError(f"haproxy is not installed ({INSTALL_HINT})")
        subprocess.run([binary, "-c", "-q", "-f", str(self._config)], check=True,
                       capture_output=True, timeout=30)
        with self._log.open("wb") as log:
            # -db: foreground, no daemon; -W is not needed for one process.
            self.process = subprocess.Popen([binary, "-db", "-f", str(self._config)],
                                            stdout=log, stderr=subprocess.STDOUT)
        wait_until_answering(self.process, lambda: httpx.get(f"{self.url}/health/live", timeout=1),
                             name="haproxy", timeout=timeout, interval=0.05,
                             details=lambda: ": " + self.output())
        return self

    def output(self) -> str:
        """HAProxy's log: one line per request, and its servers going up and down."""
        return self._log.read_text(errors="replace") if self._log.exists() else ""
