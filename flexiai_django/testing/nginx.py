"""A real nginx in front of real servers, with the shipped ``deploy/nginx.conf``.

The shipped file is a ``conf.d`` snippet for docker-compose (upstreams ``app1:8000``,
``app2:8000``, ``listen 80``); :class:`NginxProxy` renders it with loopback upstreams and
a free port, wraps it in a minimal main config whose files all live in a temporary
directory, and runs ``nginx`` in the foreground until stopped. Needs Debian's ``nginx``.
"""

from __future__ import annotations

import getpass
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from flexiai_django.testing.proxy_process import ProxyProcess
from flexiai_django.testing.redis_server import free_port
from flexiai_django.testing.servers import wait_until_answering

SHIPPED = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf"
INSTALL_HINT = "apt-get install -y nginx"


def find_nginx() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


def render(conf: str, upstreams: list[str], port: int, static_root: Path | None = None) -> str:
    """The shipped snippet with its upstream servers and listen port replaced; with
    ``static_root``, its commented-out ``location /static/`` turned on for that directory."""
    servers = "".join(f"    server {urlsplit(u).netloc} max_fails=0;\n" for u in upstreams)
    conf = re.sub(r"(upstream \w+ \{\n)(?:\s*server [^\n]*\n)+", rf"\g<1>{servers}", conf)
    if static_root is not None:
        block = re.search(r"^ *# location /static/ \{\n(?: *#.*\n)*? *# \}\n", conf, re.M)
        if block is None:
            raise ValueError("no commented-out `location /static/` block in the config")
        enabled = re.sub(r"^( *)# ?", r"\1", block.group(0), flags=re.M)
        enabled = re.sub(r"alias [^;]+;", f"alias {static_root}/;", enabled)
        conf = conf.replace(block.group(0), enabled)
    return re.sub(r"listen\s+\d+;", f"listen 127.0.0.1:{port};", conf)


class NginxProxy(ProxyProcess):
    def __init__(self, upstreams: list[str], conf: Path = SHIPPED,
                 static_root: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._dir = Path(tempfile.mkdtemp(prefix="flexiai-nginx-"))
        self._site = render(conf.read_text(), upstreams, self.port, static_root)
        self.process: subprocess.Popen[bytes] | None = None

    def _main_config(self) -> Path:
        d = self._dir
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (d / sub).mkdir(exist_ok=True)
        (d / "site.conf").write_text(self._site)
        user = f"user {getpass.getuser()};\n" if os.geteuid() == 0 else ""
        # As Debian's and the official image's main config do (static files' types).
        mime = Path("/etc/nginx/mime.types")
        types = f"  include {mime};\n" if mime.is_file() else ""
        main = d / "nginx.conf"
        main.write_text(
            f"{user}worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\n"
            f"error_log {d}/error.log warn;\nevents {{ worker_connections 256; }}\n"
            f"http {{\n{types}  default_type application/octet-stream;\n"
            f"  access_log off;\n  client_body_temp_path {d}/body;\n"
            f"  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n"
            f"  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n"
            f"  include {d}/site.conf;\n}}\n")
        return main

    def start(self, timeout: float = 15.0) -> NginxProxy:
        binary = find_nginx()
        if binary is None:
            raise RuntimeError(f"nginx is not installed ({INSTALL_HINT})")
        main = self._main_config()
        self.process = subprocess.Popen([binary, "-p", str(self._dir), "-c", str(main)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_until_answering(self.process, lambda: httpx.get(f"{self.url}/health/live", timeout=1),
                             name="nginx", timeout=timeout, interval=0.05, any_status=True,
                             details=lambda: ": " + self.errors())
        return self

    def set_down(self, upstream: str, down: bool = True) -> None:
        """Mark an upstream server ``down`` (or not) and reload, as an operator takes an
        instance out before restarting it (``nginx -s reload``). Returns once new worker
        processes run the new config; the old ones finish what they are serving."""
        assert self.process is not None
        address = re.escape(urlsplit(upstream).netloc)
        site = self._dir / "site.conf"
        text, found = re.subn(rf"(server {address} [^;\n]*?)(?: down)?;",
                              r"\1 down;" if down else r"\1;", site.read_text())
        if found != 1:
            raise ValueError(f"no upstream server {upstream} in the config")
        site.write_text(text)
        before = self._workers()
        self.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while not self._workers() - before:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not reload: {self.errors()}")
            time.sleep(0.02)

    def _workers(self) -> set[int]:
        assert self.process is not None
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.process.pid)],
                             capture_output=True, text=True, check=False).stdout
        return {int(pid) for pid in out.split()}

    def errors(self) -> str:
        log = self._dir / "error.log"
        return log.read_text(errors="replace") if log.exists() else ""
